"""Serve a video file as an MJPEG stream over HTTP at a fixed frame rate, looped: a stand-in for an
IP camera when measuring live runs (latency, dropped frames) on one machine.

    python docs/results/serve_mjpeg.py ../shared/videos/vtest.avi --fps 50 --port 8765
    segrefine-edge stream http://127.0.0.1:8765/s.mjpg --no-display --out b.mp4 --max-frames 400 \\
        --keyframes K --stats-json s.json

Frames are JPEG-encoded once, before serving, so the server costs the machine little while it runs.
"""

from __future__ import annotations

import argparse
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2


def encoded_frames(path: str, quality: int) -> list[bytes]:
    capture = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            return frames
        frames.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--quality", type=int, default=90)
    args = parser.parse_args()
    frames = encoded_frames(args.video, args.quality)

    class Stream(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            started, sent = time.monotonic(), 0
            try:
                while True:
                    jpeg = frames[sent % len(frames)]
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                                     + jpeg + b"\r\n")
                    self.wfile.flush()
                    sent += 1
                    time.sleep(max(0.0, started + sent / args.fps - time.monotonic()))
            except (BrokenPipeError, ConnectionResetError):
                return

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Stream)
    server.daemon_threads = True
    print(f"serving {len(frames)} frames at {args.fps:g} fps on http://127.0.0.1:{args.port}/s.mjpg", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
