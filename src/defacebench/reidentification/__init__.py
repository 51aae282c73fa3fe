"""Privacy measured as an attacker would: surface renders, face detection, face embeddings, a ranking attack.

Re-identification from MRI renders the skin surface and matches the face to photographs
(Schwarz et al. 2019, N Engl J Med 381:1684: 83 % of 84 volunteers identified; Schwarz et al.
2021, NeuroImage 231:117845: 97 % before defacing, 28-38 % after popular defacing software).
Here the "photographs" are renders of the full heads from other viewpoints, and the face model
is dlib's open ResNet (King 2009, J Mach Learn Res 10:1755), so the identification rates are a
lower bound on what an attacker with real photographs and a commercial model can do.

Modules: :mod:`.surface` (marching-cubes head mesh and VTK renders from several viewpoints),
:mod:`.detect` (OpenCV Haar cascade and dlib HOG detectors), :mod:`.embed` (dlib's 128-d face
descriptor), :mod:`.image` (all three for one image, the per-image record), :mod:`.attack`
(ranking, rank-k identification with Clopper-Pearson intervals, the cohort tables and figure).
"""
