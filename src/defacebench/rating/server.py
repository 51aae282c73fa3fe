"""The rating page: a local web server that shows blinded reports one at a time and stores each rating.

What a rater does is what MRIQC's rating widget asks (Esteban et al. 2017, PLoS ONE
12:e0184661; Esteban et al. 2019, Sci Data 6:30) and what Provins et al. (2025), PLoS Biol
23:e3003149, collected: an overall quality rating on a continuous 1-4 slider (1 exclude, 2 poor,
3 acceptable, 4 excellent), the artefacts seen, a confidence and a comment; the time on the page
is measured. Reports come in the rater's own random order
(:func:`defacebench.rating.blinding.rater_order`), a progress bar shows how far the rater is, and
a restarted server resumes at the first report the rater has not rated.

What the server can reach: the reports folder's manifest and ``<id>_<view>.png`` files, and the
ratings file. It is never given the key, so no route can serve it; images are served by
identifier and view name from the manifest only (no file paths from the request, so no path
traversal), without file times or ETags. It listens on 127.0.0.1 unless told otherwise; another
address needs ``allow_remote`` and then every request must carry a random token. Bad input is
answered with a 4xx and a JSON ``error`` message, and nothing is stored.
"""

from __future__ import annotations

import json
import math
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from flask import Flask, Response, jsonify, request
from markupsafe import escape
from werkzeug.exceptions import HTTPException

from ..quality.ratings import RATING_SCALE
from .blinding import REPORT_ID, rater_order, read_manifest, report_file
from .store import ARTIFACTS, CONFIDENCE_RANGE, RATING_ANCHORS, DuplicateRating, RatingsStore
from .visual import VIEW_CAPTIONS

#: Largest request body accepted (a rating is a few hundred bytes).
MAX_BODY_BYTES = 16 * 1024

#: Longest comment kept.
MAX_COMMENT_CHARS = 2000

#: Longest time on a page accepted (seconds): a day.
MAX_TIME_SEC = 86400.0

#: Fields of a submitted rating.
RATING_FIELDS = {"report_id", "position", "rating", "artifacts", "confidence", "comments", "time_sec"}

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")

TOKEN_COOKIE = "rating_token"


class BadRating(ValueError):
    """A submission that is not stored; the message says which field and why."""


def _number(payload: dict, field: str, low: float, high: float, meaning: str) -> float:
    value = payload.get(field)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRating(f"{field}: {value!r} is not a number ({meaning})")
    value = float(value)
    if not math.isfinite(value) or value < low or value > high:
        raise BadRating(f"{field}: {value:g} is outside {low:g}-{high:g} ({meaning})")
    return value


def validate_submission(payload) -> dict:
    """A submitted rating, checked field by field; raises :class:`BadRating` naming the field."""
    if not isinstance(payload, dict):
        raise BadRating("the body must be a JSON object with the fields " + ", ".join(sorted(RATING_FIELDS)))
    unknown = set(payload) - RATING_FIELDS
    missing = {"report_id", "position", "rating"} - set(payload)
    if unknown:
        raise BadRating(f"unknown field(s) {', '.join(sorted(unknown))}")
    if missing:
        raise BadRating(f"missing field(s) {', '.join(sorted(missing))}")
    report_id = payload["report_id"]
    if not isinstance(report_id, str) or not REPORT_ID.match(report_id):
        raise BadRating(f"report_id: {report_id!r} is not a report identifier")
    position = payload["position"]
    if isinstance(position, bool) or not isinstance(position, int) or position < 0:
        raise BadRating(f"position: {position!r} is not a place in the sequence (a whole number from 0)")
    low, high = RATING_SCALE
    anchors = ", ".join(f"{k} {v}" for k, v in RATING_ANCHORS.items())
    rating = _number(payload, "rating", low, high, f"the rating scale: {anchors}")
    confidence = _number(
        {"confidence": payload.get("confidence", 2.0)}, "confidence", *CONFIDENCE_RANGE, "0 doubtful to 4 confident"
    )
    time_sec = _number({"time_sec": payload.get("time_sec", 0.0)}, "time_sec", 0.0, MAX_TIME_SEC, "seconds on the page")
    artifacts = payload.get("artifacts", [])
    if not isinstance(artifacts, list) or not all(isinstance(a, str) for a in artifacts):
        raise BadRating("artifacts: must be a list of artefact keys")
    unknown_artifacts = [a for a in artifacts if a not in ARTIFACTS]
    if unknown_artifacts:
        raise BadRating(f"artifacts: unknown key(s) {', '.join(unknown_artifacts)}; known: {', '.join(ARTIFACTS)}")
    comments = payload.get("comments", "")
    if not isinstance(comments, str) or len(comments) > MAX_COMMENT_CHARS:
        raise BadRating(f"comments: must be text of at most {MAX_COMMENT_CHARS} characters")
    return {
        "randomized_id": report_id,
        "position": position,
        "rating": rating,
        "confidence": confidence,
        "time_sec": time_sec,
        "artifacts": sorted(set(artifacts), key=list(ARTIFACTS).index),
        "comments": comments,
    }


class RatingSession:
    """One rater's sequence of reports and their stored ratings."""

    def __init__(self, reports_dir: str | Path, ratings_path: str | Path, rater: str):
        if not rater or any(ch in rater for ch in "\t\n\r") or len(rater) > 100:
            raise ValueError(
                f"rater: {rater!r} must be a non-empty name without tabs or line breaks (at most 100 characters)"
            )
        self.reports_dir = Path(reports_dir)
        self.rater = rater
        manifest = read_manifest(self.reports_dir)
        self.views = {report["id"]: list(report["views"]) for report in manifest["reports"]}
        self.order = rater_order(sorted(self.views), rater, manifest["study_seed"], manifest.get("repeats", 0))
        self.store = RatingsStore(ratings_path)
        # this rater's stored ratings, read once: this session is the only writer of its rater's rows
        # (the store still checks for a duplicate under its lock on every append)
        self.rated = self.store.rated_positions(self.rater)
        self._check_resumable()

    def _check_resumable(self) -> None:
        for position, report_id in self.rated.items():
            if position >= len(self.order) or self.order[position] != report_id:
                raise ValueError(
                    f"{self.store.path}: rater {self.rater!r} rated {report_id} at position {position + 1}, but this "
                    f"reports folder ({self.reports_dir}) puts another report there; were the reports rebuilt? "
                    "Use a new ratings file for new reports"
                )

    def next_position(self) -> int | None:
        return next((p for p in range(len(self.order)) if p not in self.rated), None)

    def state(self) -> dict:
        position = self.next_position()
        total = len(self.order)
        if position is None:
            return {"done": True, "total": total, "rated": total}
        report_id = self.order[position]
        return {
            "done": False,
            "total": total,
            "position": position,
            "rated": len(self.rated),
            "report_id": report_id,
            "views": [
                {"url": f"/image/{report_id}/{view}", "caption": VIEW_CAPTIONS[view]} for view in self.views[report_id]
            ],
        }

    def image(self, report_id: str, view: str) -> bytes | None:
        if report_id not in self.views or view not in self.views[report_id]:
            return None
        return report_file(self.reports_dir, report_id, view).read_bytes()

    def submit(self, payload) -> dict:
        rating = validate_submission(payload)
        position = rating.pop("position")
        if position >= len(self.order) or self.order[position] != rating["randomized_id"]:
            raise BadRating(
                f"report_id: {rating['randomized_id']} is not the report at position {position + 1} "
                "of this rater's sequence"
            )
        expected = self.next_position()
        if expected is not None and position != expected and position not in self.rated:
            raise BadRating(f"position: {position + 1} is not the report being shown ({expected + 1})")
        row = self.store.append(rater_id=self.rater, position=position, **rating)
        self.rated[position] = rating["randomized_id"]
        return row


def create_app(reports_dir: str | Path, ratings_path: str | Path, rater: str, token: str | None = None) -> Flask:
    """The rating web application for one rater (see the module's description for what it serves).

    ``token``: when given, every request must carry it (``?token=`` once, then a cookie).
    """
    session = RatingSession(reports_dir, ratings_path, rater)
    app = Flask(__name__, static_folder=None)  # no static route: nothing but the routes below is served
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.config["rating_session"] = session

    def error(status: int, message: str):
        response = jsonify({"error": message})
        response.status_code = status
        return response

    @app.before_request
    def check_access():
        if token is None:
            # a local server answers local names only: a web page whose name was re-pointed at
            # 127.0.0.1 (DNS rebinding) would otherwise read the reports and post ratings
            if urlsplit("//" + request.host).hostname not in LOCAL_HOSTS:
                return error(
                    403, f"this rating server answers requests to 127.0.0.1 or localhost only, not {request.host}"
                )
        else:
            offered = request.args.get("token") or request.cookies.get(TOKEN_COOKIE) or ""
            if not secrets.compare_digest(offered, token):
                return error(403, "this rating server needs its access token (the address printed at start-up)")
        origin = request.headers.get("Origin")
        if request.method == "POST" and origin and origin.rstrip("/") != request.host_url.rstrip("/"):
            return error(403, f"requests from another site ({origin}) are refused")

    @app.after_request
    def headers(response: Response):
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self'; "
            "style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
            "connect-src 'self'; frame-ancestors 'none'"
        )
        for name in ("Last-Modified", "ETag"):
            response.headers.pop(name, None)
        if token is not None and request.args.get("token") == token:
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict")
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        messages = {
            413: f"the request body is larger than {MAX_BODY_BYTES} bytes",
            404: "no such page",
            405: "method not allowed here",
        }
        return error(exc.code or 500, messages.get(exc.code, exc.description or exc.name))

    @app.get("/")
    def page():
        return Response(rating_page(session.rater), mimetype="text/html")

    @app.get("/api/next")
    def next_report():
        return jsonify(session.state())

    @app.get("/image/<report_id>/<view>")
    def image(report_id: str, view: str):
        data = session.image(report_id, view)
        if data is None:
            return error(404, "no such report image")
        return Response(data, mimetype="image/png")

    @app.post("/api/ratings")
    def submit():
        if not request.is_json:
            return error(415, "send the rating as JSON (Content-Type: application/json)")
        payload = request.get_json(silent=True)
        if payload is None:
            return error(400, "the body is not valid JSON")
        try:
            session.submit(payload)
        except DuplicateRating as exc:
            return error(409, f"{exc}; nothing stored")
        except BadRating as exc:
            return error(400, f"{exc}; nothing stored")
        return jsonify(session.state())

    return app


def serve(
    reports_dir, ratings_path, rater: str, host: str = "127.0.0.1", port: int = 8765, allow_remote: bool = False
) -> None:
    """Run the rating server until interrupted; prints the address to open."""
    token = None
    if host not in LOCAL_HOSTS:
        if not allow_remote:
            raise ValueError(
                f"host {host}: binding to an address other than 127.0.0.1 exposes the reports and "
                "the rating form to the network; pass --allow-remote to do it (a token is then required)"
            )
        token = secrets.token_urlsafe(24)
    app = create_app(reports_dir, ratings_path, rater, token=token)
    address = f"http://{host}:{port}/" + (f"?token={token}" if token else "")
    session = app.config["rating_session"]
    print(
        f"Rating server for {rater}: {len(session.order)} reports, resuming at "
        f"{(session.next_position() or 0) + 1}. Open {address} (Ctrl+C to stop).",
        flush=True,
    )
    app.run(host=host, port=port, debug=False, use_reloader=False, threaded=True)


def rating_page(rater: str) -> str:
    """The rating page's HTML (no image or identifier in it: the script asks /api/next)."""
    config = json.dumps({"artifacts": ARTIFACTS, "anchors": RATING_ANCHORS})
    return PAGE.replace("{{RATER}}", str(escape(rater))).replace("{{CONFIG}}", config)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Image quality rating</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { margin: 0; font-family: system-ui, sans-serif; background: #f4f4f4; color: #222; }
 header { position: sticky; top: 0; z-index: 2; background: #222; color: #eee; padding: 8px 16px;
          display: flex; align-items: center; gap: 16px; }
 header .bar { flex: 1; height: 10px; background: #555; border-radius: 5px; overflow: hidden; }
 header .bar div { height: 100%; background: #4caf50; width: 0; }
 main { display: flex; gap: 16px; padding: 12px 16px; align-items: flex-start; }
 #views { flex: 1; min-width: 0; }
 figure { margin: 0 0 14px 0; background: #000; border-radius: 4px; overflow: hidden; }
 figure img { width: 100%; display: block; }
 figcaption { background: #333; color: #ddd; font-size: 13px; padding: 4px 8px; }
 aside { width: 400px; flex: none; position: sticky; top: 52px; background: #fff; border-radius: 6px;
         padding: 12px 14px; box-shadow: 0 1px 4px rgba(0,0,0,.2); max-height: calc(100vh - 70px); overflow-y: auto; }
 h2 { font-size: 15px; margin: 10px 0 6px; }
 input[type=range] { width: 100%; }
 .anchors { position: relative; height: 22px; font-size: 12px; margin: 0 8px; }
 .anchors span { position: absolute; transform: translateX(-50%); white-space: nowrap; padding: 2px 5px; border-radius: 3px; }
 .anchors span:first-child { transform: none; left: -8px; } .anchors span:last-child { transform: none; right: -8px; }
 .anchors span.on { font-weight: bold; color: #fff; }
 #artifacts { display: grid; grid-template-columns: 1fr 1fr; column-gap: 8px; }
 .a1.on { background: #c62828; } .a2.on { background: #ef6c00; } .a3.on { background: #1565c0; } .a4.on { background: #2e7d32; }
 #ratingValue { font-size: 20px; font-weight: bold; text-align: center; margin: 4px 0; }
 label.art { display: block; font-size: 12px; margin: 2px 0; }
 textarea { width: 100%; box-sizing: border-box; height: 44px; }
 button { width: 100%; padding: 9px; font-size: 15px; margin-top: 10px; background: #1565c0; color: #fff;
          border: 0; border-radius: 4px; cursor: pointer; }
 button:disabled { background: #9e9e9e; cursor: default; }
 #message { color: #b71c1c; font-size: 13px; min-height: 1em; margin-top: 6px; }
 .keys { font-size: 11px; color: #666; margin-top: 8px; }
 #done { padding: 40px; font-size: 18px; }
</style></head>
<body>
<header><span>Rater: <b>{{RATER}}</b></span><div class="bar"><div id="bar"></div></div>
 <span id="progress">loading...</span></header>
<main id="main">
 <section id="views"></section>
 <aside>
  <h2>Overall quality</h2>
  <input type="range" id="rating" min="1" max="4" step="0.05" value="2.5" aria-label="quality rating">
  <div class="anchors"><span class="a1">1 exclude</span><span class="a2" style="left: 33.3%">2 poor</span>
   <span class="a3" style="left: 66.7%">3 acceptable</span><span class="a4">4 excellent</span></div>
  <div id="ratingValue">move the slider</div>
  <h2>Artefacts seen</h2><div id="artifacts"></div>
  <h2>Confidence</h2>
  <input type="range" id="confidence" min="0" max="4" step="0.05" value="3" aria-label="confidence">
  <div class="anchors"><span>0 doubtful</span><span>4 confident</span></div>
  <h2>Comments</h2><textarea id="comments" maxlength="2000"></textarea>
  <button id="submit" disabled>Save and next (Enter)</button>
  <div id="message"></div>
  <div class="keys">Keys: 1-4 set the rating to an anchor, &larr; &rarr; adjust it by 0.05,
   Enter saves (outside the comment box).</div>
 </aside>
</main>
<div id="done" hidden></div>
<script>
const CONFIG = {{CONFIG}};
let current = null, shownAt = performance.now(), touched = false, sending = false;
const $ = id => document.getElementById(id);
for (const [key, label] of Object.entries(CONFIG.artifacts)) {
  const row = document.createElement('label'); row.className = 'art';
  const box = document.createElement('input'); box.type = 'checkbox'; box.value = key; box.name = 'artifact';
  row.appendChild(box); row.appendChild(document.createTextNode(' ' + label)); $('artifacts').appendChild(row);
}
function showRating() {
  const v = parseFloat($('rating').value);
  const anchor = Math.min(4, Math.max(1, Math.round(v)));
  document.querySelectorAll('.anchors span[class^=a]').forEach(s => s.classList.toggle('on', touched && s.className.startsWith('a' + anchor)));
  $('ratingValue').textContent = touched ? v.toFixed(2) + ' (' + CONFIG.anchors[anchor] + ')' : 'move the slider';
  $('submit').disabled = !touched || sending || !current;
}
function setRating(v) { $('rating').value = Math.min(4, Math.max(1, v)).toFixed(2); touched = true; showRating(); }
$('rating').addEventListener('input', () => { touched = true; showRating(); });
function render(state) {
  current = state.done ? null : state;
  const rated = state.done ? state.total : state.position;
  $('bar').style.width = (100 * rated / Math.max(1, state.total)) + '%';
  if (state.done) {
    $('main').hidden = true; $('done').hidden = false;
    $('done').textContent = 'All ' + state.total + ' reports are rated. Thank you! You can close this page.';
    $('progress').textContent = state.total + ' of ' + state.total;
    return;
  }
  $('progress').textContent = (state.position + 1) + ' of ' + state.total;
  const views = $('views'); views.replaceChildren();
  for (const v of state.views) {
    const fig = document.createElement('figure'); const img = document.createElement('img');
    img.src = v.url; img.alt = v.caption; const cap = document.createElement('figcaption'); cap.textContent = v.caption;
    fig.appendChild(cap); fig.appendChild(img); views.appendChild(fig);
  }
  $('rating').value = 2.5; $('confidence').value = 3; $('comments').value = '';
  document.querySelectorAll('input[name=artifact]').forEach(b => b.checked = false);
  touched = false; $('message').textContent = ''; window.scrollTo(0, 0); shownAt = performance.now(); showRating();
}
async function load() {
  const r = await fetch('/api/next'); render(await r.json());
}
async function submit() {
  if (!current || !touched || sending) return;
  sending = true; showRating();
  const body = {report_id: current.report_id, position: current.position, rating: parseFloat($('rating').value),
    confidence: parseFloat($('confidence').value), comments: $('comments').value,
    artifacts: [...document.querySelectorAll('input[name=artifact]:checked')].map(b => b.value),
    time_sec: (performance.now() - shownAt) / 1000};
  try {
    const r = await fetch('/api/ratings', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                           body: JSON.stringify(body)});
    const answer = await r.json();
    if (r.ok) { render(answer); } else { $('message').textContent = answer.error; }
  } catch (e) { $('message').textContent = 'Could not reach the rating server: ' + e; }
  sending = false; showRating();
}
$('submit').addEventListener('click', submit);
document.addEventListener('keydown', e => {
  if (e.target.tagName === 'TEXTAREA') return;
  if (e.key >= '1' && e.key <= '4') { setRating(parseInt(e.key)); e.preventDefault(); }
  else if ((e.key === 'ArrowLeft' || e.key === 'ArrowRight') && e.target.type !== 'range') {
    setRating(parseFloat($('rating').value) + (e.key === 'ArrowRight' ? 0.05 : -0.05)); e.preventDefault(); }
  else if (e.key === 'Enter') { submit(); e.preventDefault(); }
});
load();
</script></body></html>
"""
