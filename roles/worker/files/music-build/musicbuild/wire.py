"""The encode service's wire format, and its client (the start of every `music-encode`).

A message is a sequence of byte strings, each written as `<length>:<bytes>`. The client
sends the protocol version, its working directory, its arguments and the index files
they name; the service answers with the exit code, the receipt's text and what the command
wrote to stderr. This module imports nothing beyond what the interpreter has already
loaded, so that a delegated `music-encode` costs little more than the interpreter's start.
"""
import os

VERSION = b"1"
INPUT_OPTIONS = ("--audio", "--tags", "--track", "--copy")


def pack(fields) -> bytes:
    return b"".join(b"%d:%s" % (len(f), f) for f in fields)


def unpack(data: bytes) -> list:
    fields, pos = [], 0
    while pos < len(data):
        colon = data.index(b":", pos)
        length = int(data[pos:colon])
        end = colon + 1 + length
        if length < 0 or end > len(data):
            raise ValueError("truncated message")
        fields.append(data[colon + 1:end])
        pos = end
    return fields


def request(cwd: str, argv: list, inputs: dict) -> bytes:
    fields = [VERSION, os.fsencode(cwd), b"%d" % len(argv)] + [os.fsencode(a) for a in argv]
    for path, data in inputs.items():
        fields += [os.fsencode(path), data]
    return pack(fields)


def parse_request(data: bytes):
    """(cwd, argv, inputs) of a request; ValueError when it is not one."""
    fields = unpack(data)
    if len(fields) < 3 or fields[0] != VERSION:
        raise ValueError("not a music-encode request of this version")
    count = int(fields[2])
    argv = [os.fsdecode(a) for a in fields[3:3 + count]]
    rest = fields[3 + count:]
    if len(argv) != count or len(rest) % 2:
        raise ValueError("truncated request")
    inputs = {os.fsdecode(rest[i]): rest[i + 1] for i in range(0, len(rest), 2)}
    return os.fsdecode(fields[1]), argv, inputs


def _drain(read) -> bytes:
    """Everything `read(size)` gives until it gives nothing (end of file or of the stream)."""
    chunks = []
    while chunk := read(1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def receive(sock) -> bytes:
    """Everything the other end sends until it shuts its side down."""
    return _drain(sock.recv)


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return _drain(lambda size: os.read(fd, size))
    finally:
        os.close(fd)


def delegate(argv: list, service: str | None):
    """Have the build's encode service run this command: its exit code, or None when the
    service cannot be used (not running, not this protocol), and the caller does the work.

    The files the command reads and writes inside tup's tree (the index files, the receipt)
    are read and written here, by the process tup started, so tup sees every access.
    """
    if not service or not argv or argv[0] not in ("track", "copy"):
        return None
    inputs, receipt = {}, None
    try:
        for option, value in zip(argv, argv[1:]):
            if option in INPUT_OPTIONS:
                inputs[value] = _read(value)
            elif option == "--receipt":
                receipt = value
    except OSError:
        return None  # the command itself reports a missing input, in its own words
    if receipt is None:
        return None
    import _socket
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect("\0" + service)
        sock.sendall(request(os.getcwd(), argv, inputs))
        sock.shutdown(_socket.SHUT_WR)
        code, text, stderr = unpack(receive(sock))
        code = int(code)
    except (OSError, ValueError):
        return None
    finally:
        sock.close()
    if stderr:
        try:
            os.write(2, stderr)
        except OSError:  # tup keeps a command's output on the builds filesystem: it may be full
            pass
    if code == 0:
        code = write_receipt(receipt, text)
    return code


def write_receipt(path: str, text: bytes) -> int:
    """The receipt tup expects of a command that succeeded: 0, or 1 with one line saying why
    it could not be written (a full disk), so that tup runs the command again next time."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, text)
        finally:
            os.close(fd)
        return 0
    except OSError as exc:
        try:
            os.write(2, os.fsencode(f"music-encode: cannot write {path}: {exc.strerror}\n"))
        except OSError:
            pass
        return 1
