"""Draw a digit and watch the model read it: ``python -m mnist_lit.demo ckpt_path=<ckpt> [port=8000]``.

A local web page (plain HTML, JavaScript and CSS shipped in ``mnist_lit/demo_page/``, nothing
fetched from elsewhere) with a canvas for mouse, pen or finger. After every stroke the page posts
the drawing as a PNG; the server prepares it exactly as ``mnist_lit.predict`` prepares an image
file (``prepare``: inverted, cropped, scaled into 20x20, centred by its centre of mass) and answers
with the class, its probabilities (the class names are the checkpoint's, ``classifier.spec``) and the 28x28
image the network received. The page draws 28x28 grayscale: a model of other images is refused. With ``save=<folder>``
the page can store a drawing under the digit the person confirms, as a PNG that
``python -m mnist_lit.predict images=<folder>`` reads.
"""

from __future__ import annotations

import io
import json
import sys
import threading
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from omegaconf import DictConfig
from PIL import Image, UnidentifiedImageError

from mnist_lit.checkpoints import load_classifier
from mnist_lit.command import command
from mnist_lit.config.schema import fits
from mnist_lit.errors import ConfigError, describe
from mnist_lit.evaluation.inference import classify, inference_device
from mnist_lit.io.atomic import atomic_file, unwritable_reason
from mnist_lit.lit_module import DigitClassifier
from mnist_lit.predict import is_digit_model, prepare, spec_text

MAX_BODY = 1_000_000  # bytes: the page's 280x280 canvas is a PNG of a few kilobytes
MAX_SIDE = 1024  # pixels: larger drawings are refused before they are decoded
PAGE = resources.files("mnist_lit") / "demo_page"
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/demo.js": ("demo.js", "text/javascript; charset=utf-8"),
    "/demo.css": ("demo.css", "text/css; charset=utf-8"),
}
# The page loads nothing but its own three files and talks only to this server.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


class RequestError(Exception):
    """A request the server refuses: an HTTP status in the 4xx range and a sentence for the page."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class DemoServer(ThreadingHTTPServer):
    """The demo's HTTP server: one thread per connection, one model shared by them (one forward pass at a time)."""

    daemon_threads = True  # an open browser tab does not keep the process alive after Ctrl-C
    request_queue_size = 128  # connections waiting to be accepted; socketserver's 5 reset a burst of requests
    stopping = False  # set once serve_forever has ended: a connection cut by the stop is not worth a line

    def __init__(self, address: tuple[str, int], model: DigitClassifier, save_dir: Path | None, name: str) -> None:
        super().__init__(address, DemoHandler)
        self.model, self.save_dir, self.name = model, save_dir, name
        self.lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that failed (a client gone mid-request): one line on stderr, not socketserver's traceback."""
        if not self.stopping:
            print(f"Connection from {client_address[0]} dropped: {describe(sys.exc_info()[1])}", file=sys.stderr)

    @property
    def url(self) -> str:
        """Where the page is, e.g. ``http://127.0.0.1:8000/``."""
        host, port = self.server_address[:2]
        return f"http://{f'[{host}]' if ':' in str(host) else host}:{port}/"

    def read(self, image: Image.Image) -> dict[str, Any]:
        """What the model makes of a drawing: the digit, the ten probabilities, the prepared 28x28 image."""
        digit = prepare(image)  # mnist_lit.predict's preparation, unchanged
        answer: dict[str, Any] = {"image": digit.flatten().tolist(), "blank": not bool(digit.any())}
        if answer["blank"]:  # nothing drawn (or all erased): no digit to read
            return answer
        with self.lock:
            probabilities = classify(self.model, digit[None])[0]
        answer["digit"] = int(probabilities.argmax())
        answer["class"] = self.model.spec.class_names[answer["digit"]]
        answer["probabilities"] = [float(p) for p in probabilities]
        return answer

    def save(self, body: bytes, label: int) -> Path:
        """Store a drawing as ``<save>/<label>-<date>-<time>-<n>.png``, never over an earlier one."""
        if self.save_dir is None:
            raise RequestError(HTTPStatus.NOT_FOUND, "saving is off: start the demo with save=<folder>")
        with self.lock:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
            n = 0
            while (path := self.save_dir / f"{label}-{stamp}-{n}.png").exists():
                n += 1
            with atomic_file(path, "wb") as f:
                f.write(body)
        return path


class DemoHandler(BaseHTTPRequestHandler):
    """GET: the page and its files, ``/api/info``; POST: ``/api/predict`` and ``/api/save?label=<digit>``."""

    server: DemoServer
    server_version = "mnist-lit-demo"
    timeout = 30  # seconds a connection may stay silent; a stalled client does not hold its thread forever
    default_request_version = "HTTP/1.0"  # a request line of no readable version is answered with a status line

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path in STATIC:
            name, content_type = STATIC[path]
            self.reply(HTTPStatus.OK, (PAGE / name).read_bytes(), content_type)
        elif path == "/api/info":
            classes = list(self.server.model.spec.class_names)
            info = {"model": self.server.name, "save": self.server.save_dir is not None, "classes": classes}
            self.reply_json(HTTPStatus.OK, info)
        else:
            self.refuse(RequestError(HTTPStatus.NOT_FOUND, f"no such page: {path}"))

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        try:
            if url.path not in ("/api/predict", "/api/save"):
                raise RequestError(HTTPStatus.NOT_FOUND, f"no such address: {url.path}")
            label = self.label(url.query) if url.path == "/api/save" else None
            body = self.png_body()
            image = decode_png(body)
            if label is None:
                self.reply_json(HTTPStatus.OK, self.server.read(image))
            else:
                saved = self.server.save(body, label)
                self.reply_json(HTTPStatus.OK, {"saved": saved.name, "label": label})
        except RequestError as e:
            self.refuse(e)

    def refuse_method(self) -> None:
        self.refuse(RequestError(HTTPStatus.METHOD_NOT_ALLOWED, "only GET and POST"), {"Allow": "GET, POST"})

    do_PUT = do_DELETE = do_PATCH = refuse_method

    def label(self, query: str) -> int:
        """The confirmed class of ``/api/save?label=<0 to classes - 1>``."""
        values = parse_qs(query).get("label", [])
        classes = self.server.model.spec.num_classes
        if len(values) != 1 or values[0] not in {str(d) for d in range(classes)}:
            raise RequestError(
                HTTPStatus.BAD_REQUEST, f"label must be one class number, 0-{classes - 1}: /api/save?label=7"
            )
        return int(values[0])

    def png_body(self) -> bytes:
        """The request's body: a PNG no larger than ``MAX_BODY``, read only once its length is known and allowed."""
        if self.headers.get("Transfer-Encoding"):
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "send the drawing with a Content-Length, not chunked")
        length = self.headers.get("Content-Length")
        if length is None:
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "a Content-Length is required")
        if not length.isdigit():
            raise RequestError(HTTPStatus.BAD_REQUEST, f"Content-Length {length!r} is not a number of bytes")
        if int(length) > MAX_BODY:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"a drawing is at most {MAX_BODY:,} bytes")
        content_type = self.headers.get_content_type()
        if content_type != "image/png":
            raise RequestError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"send image/png, not {content_type}")
        body = self.rfile.read(int(length))
        if len(body) < int(length):  # the client closed its side: it is gone, not waiting for an answer
            raise ConnectionAbortedError(f"the body ended after {len(body)} of its {length} bytes")
        return body

    def reply(self, status: HTTPStatus, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        """Send a complete response."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in {**SECURITY_HEADERS, **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def reply_json(self, status: HTTPStatus, value: Any, headers: dict[str, str] | None = None) -> None:
        """Send ``value`` as JSON."""
        self.reply(status, json.dumps(value).encode(), "application/json", headers)

    def refuse(self, error: RequestError, headers: dict[str, str] | None = None) -> None:
        """Answer a refused request with its status and ``{"error": <why>}``, and close the connection."""
        self.close_connection = True  # an unread body must not be taken for the next request
        self.reply_json(error.status, {"error": str(error)}, headers)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's refusals (a request line or headers it cannot read): answered as the others."""
        self.refuse(RequestError(HTTPStatus(code), message or HTTPStatus(code).phrase))

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Only refusals reach the terminal: a stroke is a request, and a line per stroke would bury them.
        if isinstance(code, int) and code >= 400:
            super().log_request(code, size)


def decode_png(body: bytes) -> Image.Image:
    """The PNG in ``body``, decoded; RequestError (400 or 413) for anything else or anything too large."""
    try:
        with Image.open(io.BytesIO(body), formats=["PNG"]) as image:  # reads the header only
            if image.width > MAX_SIDE or image.height > MAX_SIDE:
                raise RequestError(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    f"a drawing is at most {MAX_SIDE}x{MAX_SIDE} pixels, not {image.width}x{image.height}",
                )
            image.load()
            return image
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"the body is not a readable PNG ({type(e).__name__})") from e


def check_demo_config(cfg: DictConfig) -> Path | None:
    """The demo's settings (conf/demo.yaml); returns the folder drawings are saved in, if any."""
    if not cfg.get("ckpt_path"):
        raise ConfigError("ckpt_path is missing: give ckpt_path=<run directory>/checkpoints/best.ckpt")
    port = cfg.get("port")
    if not fits(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"port={port!r} is not allowed: it must be an integer in [0, 65535] (0: any free port)")
    if not isinstance(cfg.get("host"), str) or not cfg.host:
        raise ConfigError(f"host={cfg.get('host')!r} is not allowed: give an address, e.g. host=127.0.0.1")
    if not cfg.get("save"):
        return None
    save = Path(str(cfg.save)).expanduser()
    reason = unwritable_reason(save)
    if reason:
        raise ConfigError(f"save={cfg.save!r} is not allowed: {reason}. Give a folder to keep the drawings in")
    return save


def make_server(cfg: DictConfig) -> DemoServer:
    """The demo's server for ``cfg``, bound and ready to ``serve_forever``."""
    save = check_demo_config(cfg)
    model = load_classifier(cfg.ckpt_path, inference_device()).eval()
    if not is_digit_model(model.spec):
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path!r} is not allowed: its model takes {spec_text(model.spec)} images, and the "
            "demo draws 28x28 grayscale ones. Give a checkpoint of 28x28 grayscale images, or read your images with "
            "python -m mnist_lit.predict"
        )
    name = str(model.hparams.model.get("name") or model.hparams.model["arch"])
    try:
        return DemoServer((cfg.host, cfg.port), model, save, f"{name} ({Path(cfg.ckpt_path).name})")
    except OSError as e:
        raise ConfigError(
            f"host={cfg.host} port={cfg.port} cannot be used: {e.strerror or e}. Give another port=, or port=0 "
            "for any free one"
        ) from e


def serve(cfg: DictConfig) -> None:
    """Run the demo until Ctrl-C."""
    server = make_server(cfg)
    with server:
        saving = f"; drawings saved in {server.save_dir}" if server.save_dir else ""
        print(f"Demo at {server.url}  (Ctrl-C stops it){saving}", flush=True)
        try:
            server.serve_forever()
        finally:
            server.stopping = True


@command("the demo stopped", config="demo")
def main(cfg: DictConfig) -> None:
    serve(cfg)


if __name__ == "__main__":
    main()
