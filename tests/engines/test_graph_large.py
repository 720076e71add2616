"""A 40 MB message with big attachments into Exchange Online in Graph's JSON mode: it arrives byte-faithful
(every attachment's name, type, inline flag, Content-ID and bytes), its big files through attachment upload
sessions in documented ranges, and the engine's memory stays bounded (never the whole message in memory)."""

from __future__ import annotations

import base64
import dataclasses
import email
import email.policy
import json
import random
import subprocess
import sys
from email.message import EmailMessage

from migrations_app.engines import get_engine
from migrations_app.engines.graph import MARKER
from tests.engines.graph_fixtures import fake, graphbox, when  # noqa: F401 - fixtures
from tests.fakes.microsoft import messages_in

MB = 1024 * 1024
FILES = [  # name, type, decoded size, inline Content-ID
    ("ct-scan.dcm", ("application", "dicom"), 14 * MB, None),
    ("discharge-letters.zip", ("application", "zip"), 8 * MB, None),
    ("wound.png", ("image", "png"), 4 * MB, "wound@ward7"),
    ("referral.pdf", ("application", "pdf"), 2_800_000, None),  # under 3 MB: a plain POST
    (
        "notes.docx",
        ("application", "vnd.openxmlformats-officedocument.wordprocessingml.document"),
        900_000,
        None,
    ),
    ("rota.csv", ("text", "csv"), 100_000, None),
]


def _big_message() -> bytes:
    rng = random.Random(40)
    message = EmailMessage()
    message["From"] = "Radiology <radiology@trust.nhs.uk>"
    message["To"] = "Dr Example <doctor@trust.nhs.uk>"
    message["Subject"] = "Imaging for bed 12"
    message["Date"] = "Tue, 07 Mar 2023 09:15:00 +0000"
    message["Message-ID"] = "<imaging-bed-12@trust.nhs.uk>"
    message.set_content("Images attached.\n")
    message.add_alternative('<p>Images attached.</p><img src="cid:wound@ward7">', subtype="html")
    for name, (major, minor), size, cid in FILES:
        data = rng.randbytes(size) if major != "text" else b"ward,shift\r\n" * (size // 12)
        message.add_attachment(data, maintype=major, subtype=minor, filename=name)
        if cid:
            part = message.get_payload()[-1]
            part.replace_header("Content-Disposition", f'inline; filename="{name}"')
            part["Content-ID"] = f"<{cid}>"
    return message.as_bytes(policy=email.policy.SMTP)


def _peak(fake, spec, tmp_path, name: str) -> dict:  # noqa: F811
    job = tmp_path / f"{name}.json"
    job.write_text(json.dumps({"base": fake.base, "spec": dataclasses.asdict(spec)}))
    done = subprocess.run(
        [sys.executable, "-m", "tests.engines.graph_child", str(job)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(job.with_suffix(".out").read_text())


def test_a_40_mb_message_streams_into_graph_byte_faithful_in_bounded_memory(graphbox, fake, tmp_path):  # noqa: F811
    raw = _big_message()
    assert 40 * MB <= len(raw) < 42 * MB
    src = graphbox.src()
    src.append("INBOX", raw, (b"\\Seen",), when(1))
    src.create_folder("Small")
    src.append("Small", b"Subject: a note\r\nMessage-ID: <n@t>\r\n\r\nhello\r\n", (), when(2))
    spec = graphbox.spec()  # JSON mode: the default

    result = get_engine("graph", http_client=fake.session(), max_wait=60).sync(spec)
    assert result.items_copied == 2 and not result.skipped

    inbox = messages_in(fake, graphbox.upn, "inbox")
    assert len(inbox) == 1
    copied = inbox[0]
    assert copied["subject"] == "Imaging for bed 12" and copied["isRead"] and not copied["isDraft"]
    assert copied["body"]["contentType"] == "html" and 'src="cid:wound@ward7"' in copied["body"]["content"]
    assert copied["_props"][MARKER.lower()].startswith("<imaging-bed-12@trust.nhs.uk>|")  # not pending

    original = email.message_from_bytes(raw, policy=email.policy.default)
    want = {
        part.get_filename(): (
            part.get_content_type(),
            part.get_payload(decode=True),
            part.get_content_disposition() == "inline",
            (part.get("Content-ID") or "").strip("<>") or None,
        )
        for part in original.iter_attachments()
    }
    got = {
        a["name"]: (a["contentType"], base64.b64decode(a["contentBytes"]), a["isInline"], a.get("contentId"))
        for a in copied["attachments"]
    }
    assert set(got) == {name for name, *_ in FILES}
    for name in want:
        assert got[name][0] == want[name][0], name
        assert got[name][1] == want[name][1], f"{name}: bytes differ"
        assert got[name][2:] == want[name][2:], name
    assert fake.upload_sessions == 3  # the three files of 3 MB and more; the rest inline or a plain POST
    assert 0 < fake.upload_peak_chunk <= 4 * MB and fake.upload_peak_chunk % (320 * 1024) == 0
    assert get_engine("graph", http_client=fake.session()).verify(spec).ok
    assert len(messages_in(fake, graphbox.upn, "Small")) == 1


def test_the_engine_never_holds_a_40_mb_message_in_memory(graphbox, fake, tmp_path, dovecots):  # noqa: F811
    from tests.engines.graph_fixtures import GraphBox

    raw = _big_message()
    graphbox.src().append("INBOX", raw, (), when(1))
    other = GraphBox(dovecots, fake)  # the same engine on a mailbox of small messages: its baseline
    other.src().append("INBOX", b"Subject: a note\r\nMessage-ID: <n@t>\r\n\r\nhello\r\n", (), when(2))
    try:
        baseline = _peak(fake, other.spec(), tmp_path, "baseline")
        big = _peak(fake, graphbox.spec(), tmp_path, "big")
    finally:
        other.close()
    assert baseline["items_copied"] == 1 and big["items_copied"] == 1
    grown = big["peak_rss_mb"] - baseline["peak_rss_mb"]
    print(f"peak RSS {baseline['peak_rss_mb']} MB -> {big['peak_rss_mb']} MB with a 40 MB message")
    assert grown < len(raw) / MB / 2, (
        f"the engine grew by {grown:.1f} MB for a {len(raw) / MB:.0f} MB message"
    )
