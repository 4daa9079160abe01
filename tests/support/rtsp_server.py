#!/usr/bin/python3
"""A real RTSP camera for tests: GStreamer's RTSP server with a live, moving test picture.

Run with the SYSTEM python (it needs python3-gi, which the venv lacks):

    /usr/bin/python3 tests/support/rtsp_server.py --port 8554 --path /cam [--user U --password P]

It binds 127.0.0.1 only, serves H.264 over RTP (RTSP interleaved TCP only, so no UDP ports are
opened), prints one line `READY rtsp://127.0.0.1:<port><path>` to stdout once clients can connect
(with `--port 0` the kernel picks the port and the line names it), and exits with status 0 on
SIGTERM or SIGINT. With `--watch-stdin` it also exits when its stdin closes, so a test run that
dies never leaves a server behind. SIGKILL is the outage simulation: the kernel closes every socket,
and a new server can bind the same port at once (SO_REUSEADDR; binding is retried for
--bind-timeout seconds in case the port is still held).

`--check` prints nothing and exits 0 when every GStreamer piece is installed, else prints what is
missing and exits 1 (tests/support/rtsp.py uses it to skip with a clear reason).

The picture is videotestsrc with `is-live=true` (endless, paced by the clock; a file played through
multifilesrc+decodebin would not loop). The default pattern `ball` moves; other patterns scroll
(`--horizontal-speed`). `--overlay-clock` burns in the running time when the pango plugin
(Debian: gstreamer1.0-x) is installed, and is skipped with a warning otherwise.
"""
from __future__ import annotations

import argparse
import signal
import sys
import time

REQUIRED_ELEMENTS = ("videotestsrc", "videoconvert", "capsfilter", "x264enc", "rtph264pay")
DEBIAN_PACKAGES = (
    "python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gir1.2-gst-rtsp-server-1.0 "
    "gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly"
)


def _import_gi():
    """(Gst, GstRtsp, GstRtspServer, GLib) or a SystemExit(1) naming what is missing."""
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtsp", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, Gst, GstRtsp, GstRtspServer
    except (ImportError, ValueError) as exc:
        print(f"GStreamer RTSP server bindings missing ({exc}); install: {DEBIAN_PACKAGES}", file=sys.stderr)
        raise SystemExit(1)
    Gst.init(None)
    missing = [name for name in REQUIRED_ELEMENTS if Gst.ElementFactory.find(name) is None]
    if missing:
        print(f"GStreamer elements missing: {', '.join(missing)}; install: {DEBIAN_PACKAGES}", file=sys.stderr)
        raise SystemExit(1)
    return Gst, GstRtsp, GstRtspServer, GLib


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8554, help="TCP port on 127.0.0.1; 0 = any free port")
    parser.add_argument("--path", default="/cam", help="mount point (default /cam)")
    parser.add_argument("--user", help="require HTTP basic auth with this user ...")
    parser.add_argument("--password", help="... and this password")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--pattern", default="ball", help="videotestsrc pattern (ball, smpte, snow, ...)")
    parser.add_argument(
        "--horizontal-speed", type=int, default=None, help="scroll the pattern (default: 0 for ball, else 4)"
    )
    parser.add_argument("--gop", type=int, default=None, help="key frame interval in frames (default: fps = 1 s)")
    parser.add_argument("--bitrate", type=int, default=1024, help="x264 bitrate in kbit/s")
    parser.add_argument("--overlay-clock", action="store_true", help="burn in the running time (needs pango)")
    parser.add_argument("--bind-timeout", type=float, default=10.0, help="keep trying to bind this long")
    parser.add_argument("--watch-stdin", action="store_true", help="exit when stdin closes (parent died)")
    parser.add_argument("--check", action="store_true", help="only check that the GStreamer pieces are installed")
    args = parser.parse_args(argv)
    if not args.path.startswith("/"):
        args.path = "/" + args.path
    if (args.user is None) != (args.password is None):
        parser.error("give both --user and --password, or neither")
    return args


def launch_line(args: argparse.Namespace, Gst) -> str:
    speed = args.horizontal_speed if args.horizontal_speed is not None else (0 if args.pattern == "ball" else 4)
    gop = args.gop or args.fps
    parts = [
        f"videotestsrc is-live=true pattern={args.pattern} horizontal-speed={speed}",
        f"video/x-raw,format=I420,width={args.width},height={args.height},framerate={args.fps}/1",
    ]
    if args.overlay_clock:
        if Gst.ElementFactory.find("timeoverlay") is not None:
            parts.append("timeoverlay halignment=right valignment=bottom font-desc=\"Sans 24\"")
        else:
            print("warning: timeoverlay not installed (Debian: gstreamer1.0-x); no clock overlay", file=sys.stderr)
    parts += [
        "videoconvert",
        # Fast and gentle on a small CI machine: one thread, no B-frames, 1 s GOP, SPS/PPS in band.
        f"x264enc tune=zerolatency speed-preset=ultrafast threads=1 bframes=0 key-int-max={gop} bitrate={args.bitrate}",
        "video/x-h264,profile=constrained-baseline",
        "rtph264pay name=pay0 pt=96 config-interval=-1",
    ]
    return "( " + " ! ".join(parts) + " )"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    Gst, GstRtsp, GstRtspServer, GLib = _import_gi()
    if args.check:
        return 0

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))

    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args, Gst))
    factory.set_shared(True)  # one encoder for all clients, like a camera
    factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)  # interleaved only: nothing binds UDP

    if args.user is not None:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("user", "media.factory.access", True)
        permissions.add_permission_for_role("user", "media.factory.construct", True)
        factory.set_permissions(permissions)

    server.get_mount_points().add_factory(args.path, factory)

    # attach() creates, binds (SO_REUSEADDR) and listens; 0 means it failed (port still taken).
    deadline = time.monotonic() + args.bind_timeout
    while True:
        source_id = server.attach(None)
        if source_id:
            break
        if time.monotonic() >= deadline:
            print(f"error: cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
            return 2
        time.sleep(0.1)

    loop = GLib.MainLoop()
    exit_code = 0

    def quit_loop(*_args) -> bool:
        loop.quit()
        return GLib.SOURCE_REMOVE

    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGTERM, quit_loop)
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGINT, quit_loop)
    if args.watch_stdin:

        def on_stdin(channel, condition) -> bool:
            # Anything but data (HUP, ERR) or a read of 0 bytes: the parent is gone.
            if condition & GLib.IOCondition.IN and sys.stdin.buffer.raw.read(4096):
                return GLib.SOURCE_CONTINUE
            loop.quit()
            return GLib.SOURCE_REMOVE

        GLib.io_add_watch(
            GLib.IOChannel.unix_new(sys.stdin.fileno()),
            GLib.PRIORITY_DEFAULT,
            GLib.IOCondition.IN | GLib.IOCondition.HUP | GLib.IOCondition.ERR,
            on_stdin,
        )

    port = server.get_bound_port()
    print(f"READY rtsp://127.0.0.1:{port}{args.path}", flush=True)
    try:
        loop.run()
    except KeyboardInterrupt:
        pass
    GLib.source_remove(source_id)
    print("STOPPED", flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
