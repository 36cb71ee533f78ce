"""A pool grown by a datapool whose decoder read videos otherwise than today's (runs that record
`decoder` 2 or less, fingerprint.DECODER_VERSION 3): its first run of today's datapool tries again
the videos that decoder skipped as truncated but were whole, reads again the videos whose mirrored
display matrix it turned wrongly, and reads again the videos it read with --fps whose timestamps
jump back; `datapool status` says each beforehand, as many as the run then does.

The older pool is made by today's datapool with the older decoder's behaviour put back where it
differed (the run recording decoder 2; a Matroska DURATION tag read as the track's length; the
display matrix read as its angle alone; --fps on the frames' own timestamps), on real videos
(tests/test_video_timing.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

import datapool
from datapool import Pool
from datapool.fingerprint import DECODER_VERSION
from datapool.ingest import decode
from datapool.media import write_video

from . import test_s3
from . import test_video_mid_gop as mid_gop
from .test_compat import samples
from .test_next_run import NOTHING, status
from .test_video_timing import (
    _join_ts,
    _remuxed_avi,
    _ts,
    _with_matrix,
    cut_without_reencoding,
    encode_numbered,
    numbered,
)

moto_endpoint, s3_env, s3, new_bucket = (
    test_s3.moto_endpoint,
    test_s3.s3_env,
    test_s3.s3,
    test_s3.new_bucket,
)

MODEL = Path(__file__).parent / "artifacts" / "compat" / "tiny.onnx"
KW = dict(proportion_samples=1.0, model=str(MODEL), progress=False)


def as_decoder_2(monkeypatch: pytest.MonkeyPatch, *old: str) -> None:
    """Runs record decoder 2, and read as it did: 'end_time' (a Matroska DURATION tag taken for
    the track's length), 'matrix' (a display matrix read as its angle alone), 'clock' (--fps
    slots and the truncation check on the frames' own timestamps, which a joined recording's
    start again from 0)."""
    monkeypatch.setattr("datapool.runner.DECODER_VERSION", 2)
    if "end_time" in old:
        monkeypatch.setattr(decode, "_declared_is_end_time", lambda stream: False)
    if "matrix" in old:
        monkeypatch.setattr(decode, "_display_matrix", lambda frame: None)
    if "clock" in old:  # each frame's own timestamp, however it jumps
        monkeypatch.setattr(decode._Clock, "at", lambda self, time: 0.0 if time is None else time)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("long")
    return write_video(folder / "long.mp4", [numbered(i) for i in range(20)], fps=25, crf=12)


def test_videos_the_older_decoder_skipped_as_truncated_are_tried_again_once(
    long_clip, tmp_path, monkeypatch
):
    """late.mkv (a track that starts at 5 s) was skipped as 'truncated: frames end at 0.80 s
    of the 5.80 s the header declares', and stayed skipped: the file never changed, and only
    files that could not be read are retried. cut.mkv is truly cut short. Both are tried again
    once: late.mkv is read, cut.mkv skipped again; the next run tries neither."""
    src = tmp_path / "src"
    src.mkdir()
    cut_without_reencoding(long_clip, src / "late.mkv", 0.0, shift=5.0)
    cut = cut_without_reencoding(long_clip, src / "cut.mkv", 0.0, shift=5.0)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    write_video(src / "plain.mp4", [numbered(i) for i in range(3)], crf=12)
    pool = tmp_path / "pool"
    with monkeypatch.context() as m:
        as_decoder_2(m, "end_time")
        old = datapool.run(src, pool, **KW)
    assert sorted(s["key"] for s in old.skipped) == ["cut.mkv", "late.mkv"]
    assert all(s["reason"].startswith("truncated: frames end at ") for s in old.skipped)

    lines, entries = status(pool)
    (said,) = [e for e in entries if e["kind"] == "truncated_before"]
    assert (said["files"], said["action"]) == (2, "read again")
    assert "next    the next run will read 2 files again: an older datapool skipped them as " in (
        "\n".join(lines)
    )
    dry = datapool.run(src, pool, dry_run=True, **KW)
    assert dry.would_process == ["cut.mkv", "late.mkv"]

    r = datapool.run(src, pool, **KW)
    assert (r.counts["retried"], r.counts["unchanged"]) == (2, 1)
    assert [s["key"] for s in r.skipped] == ["cut.mkv"]
    (warning,) = [w for w in r.warnings if w.startswith("tried again: 2 videos")]
    assert "(cut.mkv, late.mkv)" in warning
    p = Pool.open(pool)
    row = p.ledger.set_index("key").loc["late.mkv"]
    assert (row["status"], row["n_samples"]) == ("ok", 20)
    assert any(n.startswith("late-") for n in p.filenames)
    assert p.runs[-1]["decoder"] == DECODER_VERSION
    # Tried once: a truly truncated file is not read again by every run.
    assert status(pool) == ([NOTHING], [])
    again = datapool.run(src, pool, **KW)
    assert again.run_index is None and not again.counts["retried"] and not again.warnings


def _mirrored(src: Path) -> None:
    """flip.mp4: a left-right mirror (ffmpeg -display_hflip), which the older decoder read as a
    half turn; turn.mp4: a plain quarter turn, which it read right."""
    src.mkdir()
    pics = [numbered(i, 48, 96) for i in range(3)]
    for p in pics:
        p[30:40, :20] = (255, 0, 0)  # no mirror of the picture is itself
    _with_matrix(write_video(src / "flip.mp4", pics, crf=0), -1, 0, 0, 1)
    _with_matrix(write_video(src / "turn.mp4", pics, crf=0), 0, 1, -1, 0)


def test_videos_whose_mirrored_display_matrix_the_older_decoder_turned_are_read_again(
    tmp_path, monkeypatch
):
    src = tmp_path / "src"
    _mirrored(src)
    pool = tmp_path / "pool"
    with monkeypatch.context() as m:
        as_decoder_2(m, "matrix")
        datapool.run(src, pool, **KW)
    before = samples(pool)
    assert len(before) == 6

    lines, entries = status(pool)
    (said,) = [e for e in entries if e["kind"] == "older_video_decoder"]
    assert (said["files"], said["action"]) == (2, "checked")
    assert any(line.startswith("next    the next run will check 2 videos: ") for line in lines)

    r = datapool.run(src, pool, **KW)
    assert (r.counts["reread"], r.counts["unchanged"]) == (1, 1)
    (warning,) = [w for w in r.warnings if w.startswith("read again: 1 video ")]
    assert (
        "flip.mp4: mirrored by its display matrix (shown as EXIF orientation 2), read turned "
        "instead (as orientation 3)" in warning
    )
    after = samples(pool)
    kept = {n: v for n, v in before.items() if v[2] == "turn.mp4"}
    assert len(kept) == 3 and kept.items() <= after.items()
    datapool.run(src, tmp_path / "fresh", **KW)
    fresh = samples(tmp_path / "fresh")
    assert sorted(after) == sorted(fresh)
    for name in after:
        assert after[name][0] == fresh[name][0], name
    assert after["flip-0-mp4.png"][0] != before["flip-0-mp4.png"][0]
    assert status(pool) == ([NOTHING], [])
    again = datapool.run(src, pool, **KW)
    assert again.run_index is None and "reread" not in again.counts and not again.warnings


def test_a_mirrored_video_that_a_run_recording_decoder_2_read_right_keeps_its_samples(
    tmp_path, monkeypatch
):
    """Between the commit that applied a mirrored display matrix and the one that recorded
    decoder 3, runs read mirrored videos right and recorded decoder 2: their samples embed as
    today's decoder reads them, so they stay (not taken out of the pool on a wrong word)."""
    src = tmp_path / "src"
    _mirrored(src)
    pool = tmp_path / "pool"
    with monkeypatch.context() as m:
        as_decoder_2(m)
        datapool.run(src, pool, **KW)
    before = samples(pool)
    r = datapool.run(src, pool, **KW)
    assert r.run_index is None and "reread" not in r.counts
    assert samples(pool) == before


def test_a_bucket_source_tries_its_truncated_videos_again_but_does_not_check_the_others(
    s3, new_bucket, long_clip, tmp_path, monkeypatch
):
    """From S3 the skipped videos are tried again (each is downloaded, as any retry is), but the
    videos read whole are not downloaded to look at their first frame: the run says how many the
    older decoder read, and that --process-all reads every file again, as status said."""
    src = tmp_path / "src"
    _mirrored(src)
    cut_without_reencoding(long_clip, src / "late.mkv", 0.0, shift=5.0)
    bucket = new_bucket()
    test_s3.upload(s3, src, bucket)
    url = f"s3://{bucket}/raw/"
    pool = tmp_path / "pool"
    with monkeypatch.context() as m:
        as_decoder_2(m, "matrix", "end_time")
        datapool.run(url, pool, **KW)
    before = samples(pool)
    lines, entries = status(pool)
    assert [(e["kind"], e["files"], e["action"]) for e in entries] == [
        ("truncated_before", 1, "read again"),
        ("older_video_decoder", 2, "not checked"),
    ]
    assert "objects in S3 are not downloaded to check them" in entries[1]["why"]
    assert lines[1].startswith("next    the next run will not check 2 videos: ")

    r = datapool.run(url, pool, **KW)
    assert (r.counts["retried"], r.counts["unchanged"]) == (1, 2) and "reread" not in r.counts
    (warning,) = [w for w in r.warnings if "older datapool (its runs" in w]
    assert warning.startswith("2 videos of the pool were read by an older datapool")
    assert "--process-all reads every file again" in warning
    after = samples(pool)
    assert before.items() <= after.items() and any(v[2] == "late.mkv" for v in after.values())
    assert status(pool) == ([NOTHING], [])


def test_videos_read_with_fps_whose_timestamps_jump_back_are_read_again(tmp_path, monkeypatch):
    """Two 15-frame MPEG-TS recordings joined end to end: with --fps 5 the older decoder kept
    frames 0, 5 and 10 and dropped the second recording without a word (its timestamps start
    again from 0). The first run after the upgrade demuxes the packets of the MPEG-TS videos
    runs read with --fps, and reads again the one whose timestamps jump back."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "joined.ts").write_bytes(
        _join_ts(_ts(tmp_path / "a.ts", range(15)), _ts(tmp_path / "b.ts", range(15, 30)))
    )
    (src / "one.ts").write_bytes((tmp_path / "a.ts").read_bytes())
    kw = dict(KW, fps=5)
    pool = tmp_path / "pool"
    with monkeypatch.context() as m:
        as_decoder_2(m, "clock")
        datapool.run(src, pool, **kw)
    before = samples(pool)
    assert sorted(n for n in before if n.startswith("joined")) == [
        "joined-00-ts.png",
        "joined-05-ts.png",
        "joined-10-ts.png",
    ]
    lines, entries = status(pool)
    (said,) = [e for e in entries if e["kind"] == "older_video_decoder"]
    assert (said["files"], said["action"]) == (2, "checked")
    assert "of the 2 it read with --fps from MPEG-TS or MPEG-PS" in said["why"]
    assert lines == [f"next    the next run will check 2 videos: {said['why']}"]

    r = datapool.run(src, pool, **kw)
    assert (r.counts["reread"], r.counts["unchanged"]) == (1, 1)
    (warning,) = [w for w in r.warnings if w.startswith("read again: 1 video ")]
    assert "joined.ts: its timestamps jump back after video packet 14" in warning
    after = samples(pool)
    assert {n: v for n, v in before.items() if v[2] == "one.ts"}.items() <= after.items()
    datapool.run(src, tmp_path / "fresh", **kw)
    fresh = samples(tmp_path / "fresh")
    assert sorted(after) == sorted(fresh)
    assert {"joined-15-ts.png", "joined-25-ts.png"} <= set(after)
    for name in after:
        assert after[name][0] == fresh[name][0], name
    assert status(pool) == ([NOTHING], [])


def test_a_mirrored_video_moved_before_the_upgrade_is_read_again_under_its_new_name(
    tmp_path, monkeypatch
):
    """flip.mp4 renamed to selfie.mp4 between the older datapool's run and today's first: its
    samples move to the new name (same bytes) and, the older decoder having turned it, are read
    again all the same; the pool ends as one made today of the renamed folder."""
    src = tmp_path / "src"
    _mirrored(src)
    pool = tmp_path / "pool"
    with monkeypatch.context() as m:
        as_decoder_2(m, "matrix")
        datapool.run(src, pool, **KW)
    (src / "flip.mp4").rename(src / "selfie.mp4")
    r = datapool.run(src, pool, **KW)
    assert (r.counts["reread"], r.counts["moved"], r.counts["unchanged"]) == (1, 0, 1)
    (warning,) = [w for w in r.warnings if w.startswith("read again: 1 video ")]
    assert "selfie.mp4: mirrored by its display matrix" in warning
    datapool.run(src, tmp_path / "fresh", **KW)
    after, fresh = samples(pool), samples(tmp_path / "fresh")
    assert sorted(after) == sorted(fresh) and any(n.startswith("selfie-") for n in after)
    for name in after:
        assert after[name][0] == fresh[name][0], name


class _FromFirstPacket(decode._Integrity):
    """Decoder 3 and older: a video read from its first packet, whatever it is."""

    def __init__(self, stream, rate, kind, from_keyframe=False):  # type: ignore[no-untyped-def]
        super().__init__(stream, rate, kind, False)


def test_videos_the_older_decoder_skipped_as_damaged_that_start_mid_gop_are_tried_again_once(
    tmp_path, monkeypatch
):
    """lost.ts, a recording whose first bytes are lost (it starts before a keyframe), was
    skipped by decoder 3 as 'damaged or truncated: 35 of 50 frames decode' and stayed skipped.
    bad.ts is truly damaged (a TS packet of its first keyframe lost). Both are tried again once:
    lost.ts is read from its first keyframe, bad.ts skipped again; the next run tries neither."""
    src = tmp_path / "src"
    src.mkdir()
    whole = mid_gop.encode(tmp_path / "whole.ts", "libx264")
    mid_gop.byte_cut(whole, src / "lost.ts", 10)
    first = mid_gop._packets(whole)[0]
    data, lost = whole.read_bytes(), first.pos + 2 * 188
    (src / "bad.ts").write_bytes(data[:lost] + data[lost + 188 :])
    write_video(src / "plain.mp4", [numbered(i) for i in range(3)], crf=12)
    pool = tmp_path / "pool"
    with monkeypatch.context() as m:
        m.setattr("datapool.runner.DECODER_VERSION", 3)
        m.setattr(decode, "_Integrity", _FromFirstPacket)
        old = datapool.run(src, pool, **KW)
    reasons = {s["key"]: s["reason"] for s in old.skipped}
    assert reasons["lost.ts"].startswith("damaged or truncated: ")
    assert reasons["bad.ts"].startswith("damaged after frame 0 of the video")
    assert len(reasons) == 2

    lines, entries = status(pool)
    assert [(e["kind"], e["files"], e["action"]) for e in entries] == [
        ("mid_gop_before", 2, "read again")
    ]
    assert "next    the next run will read 2 files again: an older datapool skipped them as " in (
        "\n".join(lines)
    )
    dry = datapool.run(src, pool, dry_run=True, **KW)
    assert dry.would_process == ["bad.ts", "lost.ts"]

    r = datapool.run(src, pool, **KW)
    assert (r.counts["retried"], r.counts["unchanged"]) == (2, 1)
    assert [s["key"] for s in r.skipped] == ["bad.ts"]
    (warning,) = [w for w in r.warnings if w.startswith("tried again: 2 videos")]
    assert "skipped as damaged (bad.ts, lost.ts)" in warning
    assert any(w.startswith("1 video starts before a keyframe") for w in r.warnings)
    p = Pool.open(pool)
    row = p.ledger.set_index("key").loc["lost.ts"]
    assert (row["status"], row["n_samples"]) == ("ok", mid_gop.N - mid_gop.GOP)
    assert p.runs[-1]["decoder"] == DECODER_VERSION
    assert status(pool) == ([NOTHING], [])
    again = datapool.run(src, pool, **KW)
    assert again.run_index is None and not again.counts["retried"] and not again.warnings


def _count_probes(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Each video an older decoder's check opens (its first frame decoded, and its packets
    demuxed where the flag is True: read with --fps from MPEG-TS), as runner/upgrade.py calls
    decode.video_read_otherwise_before."""
    probes: list[bool] = []
    real = decode.video_read_otherwise_before

    def counted(media, by_fps):  # type: ignore[no-untyped-def]
        probes.append(bool(by_fps))
        return real(media, by_fps)

    monkeypatch.setattr(decode, "video_read_otherwise_before", counted)
    return probes


def _older_quiet_pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pool: Path | str) -> Path:
    """A pool of a run recording decoder 2 over videos it read as today's decoder does (a
    mirrored and a turned mp4, and an MPEG-TS recording read with --fps): today's first run
    finds none read otherwise, and has nothing new to add."""
    src = tmp_path / "src"
    _mirrored(src)
    (src / "one.ts").write_bytes(_ts(tmp_path / "a.ts", range(15)))
    with monkeypatch.context() as m:
        as_decoder_2(m)
        datapool.run(src, pool, fps=5, **KW)
    return src


def test_a_quiet_pool_records_its_check_and_the_next_run_decodes_nothing(tmp_path, monkeypatch):
    """Before, the check of an older decoder's videos was recorded only by a run that committed
    (its `decoder`): on a pool with nothing new every run decoded each video's first frame again
    (and demuxed the packets of the MPEG-TS files read with --fps), forever. Now the first run
    records the check in runs.json, without a run (the pool's samples and ledger unchanged), and
    says so; a dry run before it records nothing; the run after it decodes nothing, and
    `datapool status` says so beforehand."""
    from .test_trust import cli

    pool = tmp_path / "pool"
    src = _older_quiet_pool(tmp_path, monkeypatch, pool)
    before = samples(pool)
    ledger = (pool / "ledger.csv").read_bytes()
    runs_json = (pool / "runs.json").read_bytes()
    _, entries = status(pool)
    assert [(e["kind"], e["files"]) for e in entries] == [("older_video_decoder", 3)]

    dry = datapool.run(src, pool, fps=5, dry_run=True, **KW)
    assert dry.would_process == [] and (pool / "runs.json").read_bytes() == runs_json

    r = cli("run", src, "--pool", pool, "--fps", 5, "--proportion", 1, "--model", MODEL)
    assert r.returncode == 0, r.stderr
    assert (
        f"checked   3 videos against decoder {DECODER_VERSION}; recorded, later runs skip this check"
        in (r.stdout.splitlines())
    )
    assert (
        f"nothing new: the samples of pool {pool} are unchanged ({len(before)} samples); it "
        "records only what the lines above say" in r.stdout.splitlines()
    ), r.stdout
    p = Pool.open(pool)
    assert len(p.runs) == 1 and p.checked is not None
    assert (p.checked["decoder"], p.checked["through_run"]) == (DECODER_VERSION, 0)
    assert p.summary()["decoder_checked"] == p.checked  # (status --json shows it)
    assert samples(pool) == before and (pool / "ledger.csv").read_bytes() == ledger
    assert status(pool) == ([NOTHING], [])

    recorded = (pool / "runs.json").read_bytes()
    probes = _count_probes(monkeypatch)
    again = datapool.run(src, pool, fps=5, **KW)
    assert again.run_index is None and not again.warnings
    assert probes == []  # before: [False, False, True], on every run
    assert not any(k.startswith("decoder_checked") for k in again.counts)
    assert (pool / "runs.json").read_bytes() == recorded


def test_a_later_run_of_an_older_datapool_is_checked_again(tmp_path, monkeypatch):
    """The record covers the runs it checked: a run an older decoder commits after it is
    checked by the next run of today's, which records it through that run."""
    pool = tmp_path / "pool"
    src = _older_quiet_pool(tmp_path, monkeypatch, pool)
    datapool.run(src, pool, fps=5, **KW)  # records the check through run 0
    write_video(src / "more.mp4", [numbered(i) for i in range(3)], crf=12)
    with monkeypatch.context() as m:
        as_decoder_2(m)
        assert datapool.run(src, pool, fps=5, **KW).run_index == 1
    assert Pool.open(pool).checked["through_run"] == 0
    _, entries = status(pool)
    assert [(e["kind"], e["files"]) for e in entries] == [("older_video_decoder", 1)]
    probes = _count_probes(monkeypatch)
    r = datapool.run(src, pool, fps=5, **KW)
    assert r.run_index is None and probes == [False]
    assert r.counts["decoder_checked_videos"] == 1
    assert Pool.open(pool).checked["through_run"] == 1
    assert status(pool) == ([NOTHING], [])


def test_a_quiet_pool_in_a_bucket_records_its_check_in_its_manifest(
    s3, new_bucket, tmp_path, monkeypatch
):
    """The same for a pool in S3: runs.json with the record is a new blob, and the manifest
    (the commit point) names it; the pool's other files stay the blobs they were."""
    import json

    bucket = new_bucket()
    url = f"s3://{bucket}/pool"
    src = _older_quiet_pool(tmp_path, monkeypatch, url)

    def manifest() -> dict:
        body = s3.get_object(Bucket=bucket, Key="pool/manifest.json")["Body"].read()
        return json.loads(body)

    from datapool.s3 import store as s3pool

    # Another run commits between this one's read and its record: the record is not written
    # (the manifest's conditional write), and the run says so and ends as 'nothing new'.
    real = s3pool._commit_manifest

    def rival_first(pool, committed, etag):  # type: ignore[no-untyped-def]
        body = s3.get_object(Bucket=bucket, Key="pool/manifest.json")["Body"].read()
        s3.put_object(Bucket=bucket, Key="pool/manifest.json", Body=body + b" ")
        return real(pool, committed, etag)

    with monkeypatch.context() as m:
        m.setattr(s3pool, "_commit_manifest", rival_first)
        lost = datapool.run(src, url, fps=5, **KW)
    assert lost.run_index is None and "decoder_checked_videos" not in lost.counts
    (warning,) = lost.warnings
    assert warning.startswith("what this run checked was not recorded, so the next run checks")
    assert "another run committed to the pool" in warning

    was = manifest()
    r = datapool.run(src, url, fps=5, **KW)
    assert r.run_index is None and r.counts["decoder_checked_videos"] == 3
    now = manifest()
    assert now["generation"] == was["generation"] + 1
    changed = sorted(k for k in now["files"] if now["files"][k] != was["files"].get(k))
    assert changed == ["runs.json"]
    probes = _count_probes(monkeypatch)
    again = datapool.run(src, url, fps=5, **KW)
    assert again.run_index is None and probes == []
    assert manifest()["generation"] == now["generation"]


def test_an_hevc_mp4_without_a_sync_sample_table_decoder_4_skipped_is_tried_again(
    tmp_path, monkeypatch
):
    """Decoder 4 took every packet of an MP4 without an stss for a keyframe and skipped such an
    HEVC clip cut mid-GOP as 'damaged after frame 0 of the video'; decoder 5 reads it from its
    first IRAP picture, and a pool of decoder 4 tries it again once."""
    src = tmp_path / "src"
    src.mkdir()
    whole = mid_gop.encode(tmp_path / "whole.ts", "libx265")
    mid_gop.flagged_keyframes(whole, src / "cut.mp4", 10)
    pool = tmp_path / "pool"
    with monkeypatch.context() as m:
        m.setattr("datapool.runner.DECODER_VERSION", 4)
        m.setattr(decode, "is_keyframe", lambda packet, stream: packet.is_keyframe)
        old = datapool.run(src, pool, **KW)
    (skip,) = old.skipped
    assert skip["reason"].startswith("damaged after frame 0 of the video")
    _, entries = status(pool)
    assert [(e["kind"], e["files"]) for e in entries] == [("mid_gop_before", 1)]
    assert "records decoder 5 or less), " in entries[0]["why"]
    r = datapool.run(src, pool, **KW)
    assert r.counts["retried"] == 1 and r.skipped == []
    row = Pool.open(pool).ledger.set_index("key").loc["cut.mp4"]
    assert (row["status"], row["n_samples"]) == ("ok", mid_gop.N - mid_gop.GOP)
    assert status(pool) == ([NOTHING], [])


def test_an_mpeg2_mp4_without_a_sync_sample_table_decoder_5_skipped_is_tried_again(
    tmp_path, monkeypatch
):
    """Decoder 5 took every packet of an MP4 without an stss for a keyframe and skipped such an
    MPEG-2 clip cut mid-GOP as 'damaged or truncated: 33 of 47 frames decode'; decoder 6 reads
    it from its first I picture, and a pool of decoder 5 tries it again once."""
    src = tmp_path / "src"
    src.mkdir()
    whole = mid_gop._encode_mpeg(tmp_path / "whole.mkv", "mpeg2video")
    mid_gop.flagged_keyframes(whole, src / "cut.mp4", 10)
    pool = tmp_path / "pool"
    with monkeypatch.context() as m:
        m.setattr("datapool.runner.DECODER_VERSION", 5)
        m.setattr(decode, "_starts_intra", lambda data, codec: True)
        old = datapool.run(src, pool, **KW)
    (skip,) = old.skipped
    assert skip["reason"].startswith("damaged or truncated: ")
    r = datapool.run(src, pool, **KW)
    assert r.counts["retried"] == 1 and r.skipped == []
    row = Pool.open(pool).ledger.set_index("key").loc["cut.mp4"]
    assert row["status"] == "ok" and row["n_samples"] > 30


def test_the_older_decoder_warning_counts_one_video_in_the_singular():
    """With one video in the pool the warning said '1 video of the pool were read ... and of
    the 1 it read with --fps'; it now says 'was' and 'as it read it' (and 'in the one' of
    more), and the plural where there are more."""
    from datapool.runner.upgrade import _images_not_checked, _videos_not_checked

    one = _videos_not_checked(1, 1)
    assert one.startswith("1 video of the pool was read by an older datapool"), one
    assert ", and, as it read it with --fps from MPEG-TS or MPEG-PS, dropped" in one, one
    assert "of the 1" not in one and "the 1 " not in one, one
    some = _videos_not_checked(3, 1)
    assert "3 videos of the pool were read" in some and "in the one it read with --fps" in some
    assert "in the 2 it read with --fps" in _videos_not_checked(3, 2)
    assert "--fps" not in _videos_not_checked(1, 0)
    assert _images_not_checked(1, 0).startswith("1 image of the pool was read by")


def test_avis_decoder_5_skipped_as_truncated_are_tried_again_once(tmp_path, monkeypatch):
    """Decoder 5 measured an AVI's length on its frames' times, and skipped one whose muxer
    filled timestamp gaps with empty chunks (copied from Matroska: `ffmpeg -i x.mkv -c copy
    x.avi`) as 'truncated: frames end at 2.00 s of the 2.10 s the header declares'; decoder 6
    counts its chunks. A pool of decoder 5 tries it again once, with a truly cut one (skipped
    again) and not a truncated MKV (decoder 3 and later's reason for it stands)."""
    src = tmp_path / "src"
    src.mkdir()
    mkv = encode_numbered(tmp_path / "x.mkv", "mpeg4", 21, 10, {"bf": "2", "g": "12"})
    _remuxed_avi(mkv, src / "copy.avi")
    cut = _remuxed_avi(mkv, src / "cut.avi")
    data = cut.read_bytes()
    cut.write_bytes(data[: data.rindex(b"idx1") * 2 // 3])
    late = cut_without_reencoding(mkv, src / "late.mkv", 0.0, shift=5.0)
    late.write_bytes(late.read_bytes()[: late.stat().st_size // 2])
    pool = tmp_path / "pool"

    def span_check(self: decode._Integrity) -> None:  # decoder 5: the frames' times
        raise datapool.DecodeError("truncated: frames end at 2.00 s of the 2.10 s the header")

    with monkeypatch.context() as m:
        m.setattr("datapool.runner.DECODER_VERSION", 5)
        m.setattr(decode._Integrity, "_avi_truncated", span_check, raising=False)
        old = datapool.run(src, pool, **KW)
    assert sorted(s["key"] for s in old.skipped) == ["copy.avi", "cut.avi", "late.mkv"]
    _, entries = status(pool)
    (said,) = [e for e in entries if e["kind"] == "avi_truncated_before"]
    assert (said["files"], said["action"]) == (2, "read again")
    r = datapool.run(src, pool, **KW)
    assert (r.counts["retried"], r.counts["unchanged"]) == (2, 1)
    assert [s["key"] for s in r.skipped] == ["cut.avi"]
    assert any(w.startswith("tried again: 2 AVIs") for w in r.warnings)
    row = Pool.open(pool).ledger.set_index("key").loc["copy.avi"]
    assert (row["status"], row["n_samples"]) == ("ok", 21)
    assert status(pool) == ([NOTHING], [])


def test_an_h264_open_gop_clip_decoder_5_skipped_is_tried_again(tmp_path, monkeypatch):
    """Decoder 5 did not give H.264's decoder the packets before the first keyframe, and skipped
    an x264 open-GOP clip copied out mid-GOP as 'damaged after frame 0 of the video: ...';
    decoder 6 reads it as FFmpeg plays it, and a pool of decoder 5 tries it again once."""
    src = tmp_path / "src"
    src.mkdir()
    options = {"bf": "2", "g": "12", "x264-params": "open-gop=1:scenecut=0"}
    whole = encode_numbered(tmp_path / "whole.avi", "libx264", 48, 10, options)
    mid_gop.copied_from(whole, src / "cut.avi", 16)
    pool = tmp_path / "pool"
    with monkeypatch.context() as m:
        m.setattr("datapool.runner.DECODER_VERSION", 5)
        m.setattr(decode, "_lead_in", lambda packet: None, raising=False)
        old = datapool.run(src, pool, **KW)
    (skip,) = old.skipped
    assert skip["reason"].startswith("damaged after frame 0 of the video")
    r = datapool.run(src, pool, **KW)
    assert r.counts["retried"] == 1 and r.skipped == []
    row = Pool.open(pool).ledger.set_index("key").loc["cut.avi"]
    assert (row["status"], row["n_samples"]) == ("ok", 24)
    assert status(pool) == ([NOTHING], [])
