"""How fast does the imap engine copy a realistic mailbox, next to mbsync on the same data?

    python -m bench.imap_copy [--messages 5000] [--mb 300] [--runs 3] [--connections 1,3] [--big-mb 40]

Starts two private Dovecot instances (tests/engines/dovecot.py): the source ('/' separator) holds one
generated mailbox; each run copies it to fresh accounts on the target ('.' separator), once with the engine
and once with mbsync, then adds 100 messages to the source and times the incremental pass of both. Plain
text on loopback for both tools (no TLS for either), so the figures compare the copying, not the ciphers.
Prints one JSON line per pass and connection count with the median of the runs; ratio = engine seconds /
mbsync seconds (mbsync uses one connection, so the one-connection line is the like-for-like comparison).
Each engine pass runs in a fresh process of its own, so peak_rss_mb is the engine's alone (the bench holds
the generated mailbox in memory); --big-mb puts one message that large in INBOX (streamed, never whole).
The engine's copies are checked byte for byte on a sample (mbsync adds an X-TUID header, so its are not).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from migrations_app.engines import EndpointSpec, MailboxSpec, get_engine
from tests.engines import mailgen
from tests.engines.dovecot import dovecot_binary, start_dovecot

# A trust user's mailbox: (folder, share of the messages).
FOLDERS = [
    ("INBOX", 0.34),
    ("Sent", 0.18),
    ("Archive/2022", 0.08),
    ("Archive/2023", 0.1),
    ("Archive/2024", 0.1),
    ("Projects/Ward 7 rota", 0.04),
    ("Projects/Audit/Evidence", 0.03),
    ("Clinics/Outpatients", 0.03),
    ("Drafts", 0.01),
    ("Trash", 0.04),
    ("Junk", 0.02),
    ("Entwürfe", 0.01),
    ("Résumé", 0.02),
]


def message_sizes(count: int, total: int, rng: random.Random) -> list[int]:
    """Mostly short text, a quarter with a document, a few with big scans; scaled to `total` bytes."""
    sizes = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.70:
            sizes.append(int(rng.lognormvariate(8.8, 0.5)))  # ~7 KB
        elif roll < 0.96:
            sizes.append(int(rng.lognormvariate(10.8, 0.7)))  # ~60 KB
        else:
            sizes.append(int(rng.lognormvariate(13.6, 0.6)))  # ~1 MB
    scale = total / sum(sizes)
    return [max(1_500, int(s * scale)) for s in sizes]


def generate(count: int, total: int, seed: int, start: int = 0) -> list[tuple[str, dict]]:
    rng = random.Random(seed)
    sizes = message_sizes(count, total, rng)
    names = [f for f, _ in FOLDERS]
    weights = [w for _, w in FOLDERS]
    out = []
    for i, size in enumerate(sizes, start=start):
        folder = rng.choices(names, weights)[0]
        flags = []
        if folder not in ("Drafts", "Junk") and rng.random() < 0.8:
            flags.append(b"\\Seen")
        if rng.random() < 0.1:
            flags.append(b"\\Answered")
        if rng.random() < 0.05:
            flags.append(b"\\Flagged")
        if folder == "Drafts":
            flags.append(b"\\Draft")
        if rng.random() < 0.03:
            flags.append(b"$Label1")
        date = datetime.datetime(2022, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(minutes=i * 97)
        out.append((folder, {"msg": mailgen.message(i, size=size, rng=rng), "flags": flags, "date": date}))
    return out


def seed_source(client, messages: list[tuple[str, dict]]) -> list[int]:
    by_folder: dict[str, list[dict]] = {}
    for folder, m in messages:
        by_folder.setdefault(folder, []).append(m)
    for folder, items in by_folder.items():
        if folder != "INBOX" and not client.folder_exists(folder):
            client.create_folder(folder)
        mailgen.append(client, folder, items, batch=100)
    return [len(v) for v in by_folder.values()]


MBSYNCRC = """\
FSync no

IMAPAccount src
Host 127.0.0.1
Port {src_port}
User {src_user}
Pass {password}
SSLType None
AuthMechs LOGIN

IMAPStore src
Account src

IMAPAccount tgt
Host 127.0.0.1
Port {tgt_port}
User {tgt_user}
Pass {password}
SSLType None
AuthMechs LOGIN

IMAPStore tgt
Account tgt

Channel copy
Far :src:
Near :tgt:
Patterns *
Create Near
Sync All
Expunge None
CopyArrivalDate yes
SyncState {state}/
"""


def run_mbsync(workdir: Path, source, target, src_user: str, tgt_user: str) -> float:
    config = workdir / f"mbsyncrc-{tgt_user}"
    state = workdir / f"state-{tgt_user}"
    state.mkdir(exist_ok=True)
    config.write_text(
        MBSYNCRC.format(
            src_port=source.port,
            tgt_port=target.port,
            src_user=src_user,
            tgt_user=tgt_user,
            password="secret",
            state=state,
        )
    )
    started = time.perf_counter()
    done = subprocess.run(["mbsync", "-q", "-c", str(config), "copy"], capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"mbsync failed: {done.stderr[-2000:]}")
    return elapsed


def check_sample(source, target, src_user: str, tgt_user: str, folder: str, tgt_folder: str, n: int) -> int:
    """Fetch n random messages from both sides (matched by Message-ID) and compare the bytes."""
    src = mailgen.client(source, src_user, tls=False)
    tgt = mailgen.client(target, tgt_user, tls=False)
    try:
        src.select_folder(folder, readonly=True)
        tgt.select_folder(tgt_folder, readonly=True)
        uids = random.Random(1).sample(src.search("ALL"), n)
        checked = 0
        for uid in uids:
            body = src.fetch([uid], [b"BODY.PEEK[]"])[uid][b"BODY[]"]
            mid = mailgen.header(body, "Message-ID")
            found = tgt.search(["HEADER", "Message-ID", mid])
            bodies = [tgt.fetch([u], [b"BODY.PEEK[]"])[u][b"BODY[]"] for u in found]
            if body not in bodies:
                raise AssertionError(f"message {mid} is not byte-for-byte identical on the target")
            checked += 1
        return checked
    finally:
        src.logout()
        tgt.logout()


def _engine_pass_in_a_process(spec: MailboxSpec, connections: int, checkpoint: dict | None, workdir: Path):
    """One engine pass in a fresh interpreter: (seconds, the result's checkpoint and counts, peak RSS MB)."""
    job = workdir / f"job-{time.monotonic_ns()}.json"
    job.write_text(
        json.dumps(
            {
                "connections": connections,
                "checkpoint": checkpoint,
                "source": [spec.source.host, spec.source.port, spec.source.username],
                "target": [spec.target.host, spec.target.port, spec.target.username],
            }
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "bench.imap_copy", "--child", str(job)], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    out = json.loads(job.with_suffix(".out").read_text())
    return out["seconds"], out, out["peak_rss_mb"]


def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). Not getrusage's ru_maxrss: that carries the high-water mark
    of the process we were forked from across exec, so a child of a big bench would report the bench."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(job_path: str) -> int:
    job = json.loads(Path(job_path).read_text())
    host, port, user = job["source"]
    thost, tport, tuser = job["target"]
    spec = MailboxSpec(
        email="bench@example.nhs.uk",
        source=EndpointSpec("imap", host, port, "plain", user, "secret"),
        target=EndpointSpec("imap", thost, tport, "plain", tuser, "secret"),
    )
    engine = get_engine("imap", connections=job["connections"])
    started = time.perf_counter()
    result = engine.sync(spec, job["checkpoint"], None)
    seconds = time.perf_counter() - started
    peak = _peak_rss_mb()
    Path(job_path).with_suffix(".out").write_text(
        json.dumps(
            {
                "seconds": seconds,
                "items_copied": result.items_copied,
                "checkpoint": result.checkpoint,
                "peak_rss_mb": round(peak, 1),
            }
        )
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 3 and sys.argv[1] == "--child":
        return _child(sys.argv[2])
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--mb", type=float, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--new", type=int, default=100, help="messages added before the incremental pass")
    parser.add_argument("--connections", default="1,3", help="engine connection counts, one line each")
    parser.add_argument("--big-mb", type=float, default=40, help="one message this large in INBOX (0: none)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    if dovecot_binary() is None or shutil.which("mbsync") is None:
        print("needs dovecot and mbsync: apt-get install dovecot-imapd isync", file=sys.stderr)
        return 2

    source = start_dovecot("/", quota=False)
    target = start_dovecot(".", quota=False)
    workdir = Path(tempfile.mkdtemp(prefix="bench-imap-"))
    try:
        bench_user = source.new_user()
        src = mailgen.client(source, bench_user, tls=False)
        t = time.perf_counter()
        messages = generate(args.messages, int(args.mb * 1024 * 1024), args.seed)
        seed_source(src, messages)
        total_bytes = sum(len(m["msg"]) for _, m in messages)
        print(
            f"# seeded {len(messages)} messages, {total_bytes / 1e6:.0f} MB in {time.perf_counter() - t:.1f} s",
            file=sys.stderr,
        )
        if args.big_mb:
            big = mailgen.message(9_999_999, size=int(args.big_mb * 1024 * 1024), subject="Theatre video")
            mailgen.append(src, "INBOX", [{"msg": big, "flags": []}])
            messages.append(("INBOX", {"msg": big}))
            total_bytes += len(big)
        counts = [int(c) for c in str(args.connections).split(",")]
        check = get_engine("imap", connections=1)
        results = {
            (name, c): {"engine": [], "mbsync": [], "rss": []}
            for name in ("full", "incremental")
            for c in counts
        }
        new_bytes = 0
        for run in range(args.runs):
            for connections in counts:
                eng_user, mbs_user = target.new_user(), target.new_user()
                spec = MailboxSpec(
                    email="bench@example.nhs.uk",
                    source=EndpointSpec("imap", source.host, source.port, "plain", bench_user, "secret"),
                    target=EndpointSpec("imap", target.host, target.port, "plain", eng_user, "secret"),
                )

                def engine_pass(checkpoint, spec=spec, connections=connections):
                    return _engine_pass_in_a_process(spec, connections, checkpoint, workdir)

                # Alternate who goes first, so neither always meets a cold or a warm cache.
                if run % 2 == 0:
                    seconds, result, rss = engine_pass(None)
                    mbsync_seconds = run_mbsync(workdir, source, target, bench_user, mbs_user)
                else:
                    mbsync_seconds = run_mbsync(workdir, source, target, bench_user, mbs_user)
                    seconds, result, rss = engine_pass(None)
                assert result["items_copied"] == len(messages), result["items_copied"]
                results[("full", connections)]["engine"].append(seconds)
                results[("full", connections)]["mbsync"].append(mbsync_seconds)
                results[("full", connections)]["rss"].append(rss)
                print(
                    f"# run {run}, {connections} connection(s), full: engine {seconds:.2f} s ({rss} MB peak), "
                    f"mbsync {mbsync_seconds:.2f} s",
                    file=sys.stderr,
                )

                added = generate(
                    args.new, args.new * 40_000, args.seed + 1000 + run, start=10_000_000 + run * 1000
                )
                new_bytes = sum(len(m["msg"]) for _, m in added)
                seed_source(src, added)
                if run % 2 == 0:
                    inc_seconds, inc, inc_rss = engine_pass(result["checkpoint"])
                    inc_mbsync = run_mbsync(workdir, source, target, bench_user, mbs_user)
                else:
                    inc_mbsync = run_mbsync(workdir, source, target, bench_user, mbs_user)
                    inc_seconds, inc, inc_rss = engine_pass(result["checkpoint"])
                assert inc["items_copied"] == args.new, inc["items_copied"]
                results[("incremental", connections)]["engine"].append(inc_seconds)
                results[("incremental", connections)]["mbsync"].append(inc_mbsync)
                results[("incremental", connections)]["rss"].append(inc_rss)
                print(
                    f"# run {run}, {connections} connection(s), incremental: engine {inc_seconds:.2f} s, "
                    f"mbsync {inc_mbsync:.2f} s",
                    file=sys.stderr,
                )

                verify = check.verify(spec)
                assert verify.ok, [f.describe() for f in verify.differences]
                checked = check_sample(source, target, bench_user, eng_user, "INBOX", "INBOX", 40)
                checked += check_sample(
                    source, target, bench_user, eng_user, "Archive/2023", "Archive.2023", 20
                )
                print(f"# verify ok, {checked} sampled messages byte-for-byte identical", file=sys.stderr)

                # Take the new messages out again so every pass copies the same mailbox.
                _remove_added(src, added)

        for (name, connections), figures in results.items():
            count, size = (len(messages), total_bytes) if name == "full" else (args.new, new_bytes)
            seconds = statistics.median(figures["engine"])
            mbsync_seconds = statistics.median(figures["mbsync"])
            print(
                json.dumps(
                    {
                        "bench": "imap_copy",
                        "pass": name,
                        "connections": connections,
                        "messages": count,
                        "mb": round(size / 1024 / 1024, 1),
                        "seconds": round(seconds, 3),
                        "messages_per_s": round(count / seconds, 1),
                        "mb_per_s": round(size / 1024 / 1024 / seconds, 1),
                        "mbsync_seconds": round(mbsync_seconds, 3),
                        "ratio": round(seconds / mbsync_seconds, 3),
                        "peak_rss_mb": max(figures["rss"]),
                        "big_message_mb": args.big_mb,
                        "runs": args.runs,
                        "loadavg": [round(x, 2) for x in os.getloadavg()],
                    }
                )
            )
        return 0
    finally:
        source.stop()
        target.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _remove_added(client, added: list[tuple[str, dict]]) -> None:
    by_folder: dict[str, set[str]] = {}
    for folder, m in added:
        by_folder.setdefault(folder, set()).add(mailgen.header(m["msg"], "Message-ID"))
    for folder, ids in by_folder.items():
        client.select_folder(folder)
        uids = client.search("ALL")
        fetched = client.fetch(uids, [b"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
        doomed = [
            uid
            for uid, data in fetched.items()
            if mailgen.header(data[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"], "Message-ID") in ids
        ]
        client.delete_messages(doomed)
        client.uid_expunge(doomed)


if __name__ == "__main__":
    sys.exit(main())
