"""``defacebench-rate``: build blinded reports, run a rating session, analyse the ratings.

    defacebench-rate build   --variants variants.tsv --reports DIR --key KEY.tsv [--seed N] [--repeats K]
    defacebench-rate serve   --reports DIR --ratings RATINGS.tsv --rater NAME [--port 8765]
    defacebench-rate analyse --ratings RATINGS.tsv --key KEY.tsv --out DIR
    defacebench-rate simulate --reports DIR --key KEY.tsv --ratings NEW.tsv --bias METHOD=0.1 (validation)

The workflow builds the reports and runs the analysis itself (``rating:`` in the study's
configuration, workflow/rules/rating.smk); ``serve`` is what each rater runs. docs/rating.md
describes a session.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .blinding import NONDEFACED, BlindingError, ImageVariant, build_reports, read_table

#: Columns of a variants list for ``build`` (brain_mask, layout_reference and dataset optional).
VARIANT_COLUMNS = ("subject", "variant", "image")


def read_variants(path: str | Path) -> list[ImageVariant]:
    """Image variants from a tab-separated list; relative paths are taken from the list's folder.

    Without a ``layout_reference`` column a subject's ``none`` variant lays out all its variants'
    slices (so nondefaced and defaced reports of a subject show the same slices).
    """
    path = Path(path)
    rows = read_table(path, VARIANT_COLUMNS, "variants list")

    def resolve(value: str | None, number: int, column: str) -> Path | None:
        if not value:
            return None
        file = Path(value) if Path(value).is_absolute() else path.parent / value
        if not file.exists():
            raise BlindingError(f"{path}: line {number}, column '{column}': {file} does not exist")
        return file

    nondefaced = {row["subject"]: row["image"] for row in rows if row["variant"] == NONDEFACED}
    variants = []
    for number, row in enumerate(rows, start=2):
        for column in VARIANT_COLUMNS:
            if not (row.get(column) or "").strip():
                raise BlindingError(f"{path}: line {number}, column '{column}': empty")
        reference = row.get("layout_reference") or nondefaced.get(row["subject"])
        variants.append(
            ImageVariant(
                subject=row["subject"],
                variant=row["variant"],
                image=resolve(row["image"], number, "image"),
                brain_mask=resolve(row.get("brain_mask"), number, "brain_mask"),
                layout_reference=resolve(reference, number, "layout_reference"),
                dataset=row.get("dataset") or "",
            )
        )
    return variants


def run_simulation(args) -> None:
    """``simulate``: rate through the API with set biases, then report each method's estimate against the set bias."""
    from .simulated import bias_recovered, simulate_ratings

    bias = {}
    for item in args.bias:
        method, _, value = item.partition("=")
        try:
            bias[method] = float(value)
        except ValueError as exc:
            raise ValueError(f"--bias {item!r}: expected METHOD=VALUE, e.g. quickshear=0.1") from exc
    if Path(args.ratings).exists():
        raise ValueError(f"--ratings {args.ratings}: exists; simulated ratings go to a new file")
    raters = [f"simulated_{n + 1:02d}" for n in range(args.raters)]
    count = simulate_ratings(args.reports, args.key, args.ratings, raters, bias, seed=args.seed)
    print(f"{count} simulated ratings in {args.ratings} (a validation of the analysis, not a finding)")
    for method, found in bias_recovered(args.ratings, args.key, bias).items():
        print(
            f"{method}: set {found['set']:+.3f}, estimated {found['estimate']:+.3f} "
            f"(95 % CI {found['ci_low']:+.3f} to {found['ci_high']:+.3f}, p {found['p']:.3g}); "
            f"{'covered' if found['covered'] else 'NOT covered'}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="defacebench-rate", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="draw blinded reports of image variants and write the key")
    build.add_argument(
        "--variants",
        required=True,
        help="TSV: subject, variant (none or a method), image, [brain_mask], [layout_reference], [dataset]",
    )
    build.add_argument("--reports", required=True, help="folder the rating server will serve")
    build.add_argument("--key", required=True, help="key file (outside the reports folder)")
    build.add_argument("--seed", type=int, default=0, help="study seed of the raters' orders")
    build.add_argument("--repeats", type=int, default=0, help="reports each rater sees a second time")
    serve = commands.add_parser("serve", help="start the rating page for one rater")
    serve.add_argument("--reports", required=True)
    serve.add_argument("--ratings", required=True, help="ratings file (created, then appended to)")
    serve.add_argument("--rater", required=True, help="the rater's name (also seeds their order)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow an address other than 127.0.0.1 (requests then need a printed token)",
    )
    analyse = commands.add_parser("analyse", help="un-blind the ratings and test for a defacing bias")
    analyse.add_argument("--ratings", required=True)
    analyse.add_argument("--key", required=True)
    analyse.add_argument(
        "--out", required=True, help="folder for ratings_lmm.tsv, ratings_agreement.tsv, ratings_unblinded.tsv"
    )
    simulate = commands.add_parser(
        "simulate",
        help="validation: simulated raters with a set bias rate through the "
        "server's API, and the model must recover it",
    )
    simulate.add_argument("--reports", required=True)
    simulate.add_argument("--key", required=True)
    simulate.add_argument("--ratings", required=True, help="a new ratings file for the simulated ratings")
    simulate.add_argument("--raters", type=int, default=4)
    simulate.add_argument(
        "--bias",
        action="append",
        default=[],
        metavar="METHOD=VALUE",
        help="change of the rating when defaced by METHOD (repeatable; others 0)",
    )
    simulate.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            key = build_reports(read_variants(args.variants), args.reports, args.key, args.seed, args.repeats)
            print(f"reports in {args.reports}; key in {key} (keep it from the raters)")
        elif args.command == "serve":
            from .server import serve as run_server

            run_server(
                args.reports, args.ratings, args.rater, host=args.host, port=args.port, allow_remote=args.allow_remote
            )
        elif args.command == "simulate":
            run_simulation(args)
        else:
            from .analysis import analyse as run_analysis

            for name, path in run_analysis(args.ratings, args.key, args.out).items():
                print(f"{name}: {path}")
    except (ValueError, OSError) as exc:
        print(f"defacebench-rate {args.command}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
