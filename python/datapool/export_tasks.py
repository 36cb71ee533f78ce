"""Tasks files for labelling tools: beside an export's files, one file a tool imports as it is,
each task pointing at an exported file where the tool can read it (`datapool export --tasks`).

    label-studio   label_studio_tasks.json   [{"data": {"image": URL, "sample": ..., ...}}]
    labelbox       labelbox_data_rows.json   [{"row_data": URL, "global_key": ..., ...}]
    coco           coco.json                 {"images": [{"file_name": NAME, ...}], ...}
                                             (export_coco.py: names, not URLs)

A task's URL is `--url-prefix` followed by the file's name in the export, percent-encoded
(`urllib.parse.quote`, "/" kept: a space, `,`, `#`, `?`, `%`, `+`, quotes and non-ASCII letters
are encoded, so the URL names the file whether the prefix ends in a path or in a query such as
Label Studio's `/data/local-files/?d=`). Without a prefix, an export to s3://bucket/prefix or
gs://bucket/prefix names each object as the tool documents it:

- Label Studio: `s3://bucket/key` (`gs://bucket/key`), as it is. Label Studio resolves such a URI
  to a presigned URL through the project's S3 (GCS) source storage for that bucket, taking the key
  from the URI's path without decoding it (io_storages/s3 and io_storages/gcs:
  `urlparse(url, allow_fragments=False).path`), so the key is written unencoded. A key with a `?`
  cannot be named this way (its rest would be read as a query): such an export is refused before
  anything is written, and `--url-prefix` names them.
- Labelbox, S3: an https URL (its SDK refuses `s3://`), in the virtual-hosted style its IAM
  delegated access asks for, `https://bucket.s3.REGION.amazonaws.com/key` (the bucket's region
  is asked of S3); on an S3-compatible endpoint (MinIO, Ceph), `ENDPOINT/bucket/key`.
- Labelbox, GCS: `gs://bucket/key`, unencoded: its GCS delegated access takes gsutil URIs only
  ("Only gsutil URIs are supported", docs.labelbox.com/docs/using-google-cloud-storage; its
  labelbox-gcs-stream example writes `row_data=f"gs://{bucket}/{name}"`). A key with a `?` is
  refused as for Label Studio.

A local export folder has no URL a tool could know: `--url-prefix` is required there.
The files are written where `selected_filenames.txt` is, and list what it lists: the samples
this export wrote (a crop selection's crops, not the images that hold them).
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlparse
from xml.sax.saxutils import quoteattr

from datapool.errors import ConfigError
from datapool.specs import scheme_of

# format -> the file it writes in the export's destination
TASK_FILES: dict[str, str] = {
    "label-studio": "label_studio_tasks.json",
    "labelbox": "labelbox_data_rows.json",
    "coco": "coco.json",
}
# the formats whose tasks point at each file by its URL (`--url-prefix`); COCO names each file
# by its path relative to the file it is in
URL_FORMATS = ("label-studio", "labelbox")
# the formats --pre-annotate puts predictions into
PRE_ANNOTATED = ("label-studio", "coco")
# the buckets an export writes into, whose objects the tasks name without --url-prefix
BUCKET_SCHEMES = ("s3", "gs")


def check_tasks(
    formats: Sequence[str],
    dest: str,
    url_prefix: str | None,
    pre_annotate: str | None = None,
    predictions_dir: str | None = None,
) -> None:
    """Raise ConfigError where the tasks asked for cannot be written for `dest` (before an
    export, or a run with --export, does any work)."""
    if predictions_dir is not None and pre_annotate is None:
        raise ConfigError(
            "--predictions is used only with --pre-annotate TASK: add it, naming the task"
        )
    if pre_annotate is not None and not any(f in PRE_ANNOTATED for f in formats):
        raise ConfigError(
            f"--pre-annotate {pre_annotate} puts the predictions into Label Studio's tasks or a "
            "COCO file: add --tasks label-studio or --tasks coco (Labelbox takes pre-labels "
            "through its SDK, not in its data rows)"
        )
    unknown = [f for f in formats if f not in TASK_FILES]
    if unknown:
        raise ConfigError(
            f"--tasks {unknown[0]!r} is not a tasks format: use {', '.join(TASK_FILES)}"
        )
    urls = [f for f in formats if f in URL_FORMATS]
    if url_prefix is not None and not urls:
        raise ConfigError(
            "--url-prefix is used only with --tasks label-studio or labelbox (a COCO file names "
            "each file by its path in DEST): add one, or drop --url-prefix"
        )
    if url_prefix is not None:
        _check_prefix(urls, url_prefix)
    elif urls and scheme_of(dest) not in BUCKET_SCHEMES:
        raise ConfigError(
            f"--tasks {urls[0]} needs --url-prefix URL for a folder DEST, the URL its files "
            "are served under: e.g. --url-prefix '/data/local-files/?d=export/' (Label Studio's "
            "local files) or 'https://host/export/'"
        )


def _check_prefix(formats: Sequence[str], prefix: str) -> None:
    parts = urlparse(prefix)
    web = parts.scheme in ("http", "https") and bool(parts.netloc)
    if "labelbox" in formats and not web:
        raise ConfigError(
            f"--url-prefix {prefix!r}: Labelbox reads http(s) URLs only; give "
            "'https://host/path/' where DEST's files are served"
        )
    if parts.scheme in ("s3", "gs") and parts.netloc:
        raise ConfigError(
            f"--url-prefix {prefix!r} names a bucket, not a URL a labelling tool reads files "
            "under: export into the bucket (DEST s3://bucket/prefix, without --url-prefix) and "
            "the tasks point at its objects, or give the 'https://host/path/' DEST is served under"
        )
    if not web and not prefix.startswith("/"):
        raise ConfigError(
            f"--url-prefix {prefix!r} is not a URL: give 'https://host/path/' or a path on the "
            "Label Studio server such as '/data/local-files/?d=export/'"
        )
    if "#" in prefix:
        raise ConfigError(f"--url-prefix {prefix!r} has a '#': nothing after it reaches a server")
    if not prefix.endswith(("/", "=")):
        # (`https://host/out` + `a.jpg` would name https://host/outa.jpg)
        raise ConfigError(
            f"--url-prefix {prefix!r} must end with '/' (a folder's URL), or with '=' (a query "
            f"such as Label Studio's '?d='): each file's name is appended to it; try {prefix}/"
        )


LOCAL_FILES = "/data/local-files/"  # Label Studio's local files: ?d=PATH under its document root


def local_files_serving(dest: str, url_prefix: str | None) -> tuple[str | None, str | None]:
    """For a folder `dest` whose tasks point at Label Studio's local files (`url_prefix`
    `[https://host]/data/local-files/?d=PATH/`): (how Label Studio serves DEST's files there, one
    line), or (None, a warning) where DEST is not a folder that PATH can name. Label Studio reads
    `?d=PATH/NAME` as LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT/PATH/NAME, so DEST must end with PATH
    (unless Label Studio sees DEST elsewhere: a container's mount), and serves it only to a
    project with a Local files storage of a folder that holds it, strictly below the document
    root (Label Studio 1.23.2 refuses one of the root itself): so PATH may not be empty. (None,
    None) for other prefixes."""
    if url_prefix is None:
        return None, None
    parts = urlparse(url_prefix)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if parts.path != LOCAL_FILES or not query or query[-1][0] != "d":
        return None, None
    want = tuple(p for p in posixpath.normpath(query[-1][1]).split("/") if p not in ("", "."))
    folder = Path(os.path.abspath(dest))
    above = len(folder.parts) - len(want)  # (parts[0] is the root, "/" or "C:\\")
    if not want:
        # (Label Studio refuses a Local files storage of its document root itself, and files
        # are served only through a storage that holds them)
        return None, (
            f"--url-prefix {url_prefix!r} names files in Label Studio's document root itself, "
            "which Label Studio serves through no Local files storage (it refuses one of the "
            f"document root): give --url-prefix '{LOCAL_FILES}?d={quote(folder.name)}/' and "
            f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={folder.parent}"
        )
    if above < 1 or folder.parts[above:] != want:
        d = "/".join(want)
        return None, (
            f"--url-prefix {url_prefix!r} names Label Studio's local files under {d}/ in "
            f"its document root, and DEST {folder} is not a folder of "
            f"that name: its tasks' images will not be found unless Label Studio sees DEST there "
            f"(a container's mount); give --url-prefix '{LOCAL_FILES}?d={quote(folder.name)}/' and "
            f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={folder.parent}"
        )
    root = Path(*folder.parts[:above])
    return (
        "Label Studio serves them with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and "
        f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={root}, to a project with a Local files source "
        f"storage of {folder} (Settings > Cloud Storage; no sync needed)"
    ), None


@dataclass(frozen=True)
class BucketPrefix:
    """The prefix of a bucket an export writes into: `scheme` "s3" or "gs"; `https` (S3 only)
    the https URL of the bucket's objects for Labelbox, "" where it is not known."""

    scheme: str
    bucket: str
    prefix: str
    https: str = ""

    def where(self, name: str = "") -> str:
        return f"{self.scheme}://{self.bucket}/{self.prefix}{name}"


class Locator:
    """Where a labelling tool reads each exported file: its URL from the export's name."""

    def __init__(self, url_prefix: str | None, bucket: BucketPrefix | None) -> None:
        """`bucket`: the bucket prefix the files are written into (None for a folder: only a
        --url-prefix names the files then)."""
        self.url_prefix = url_prefix
        self.bucket = bucket

    def url(self, fmt: str, name: str) -> str:
        if self.url_prefix is not None:
            return self.url_prefix + quote(name, safe="/")
        b = self.bucket
        assert b is not None  # (check_tasks: a local DEST has a prefix)
        if fmt == "label-studio" or b.scheme == "gs":  # (Labelbox takes gsutil URIs for GCS)
            return b.where(name)
        return b.https + quote(b.prefix + name, safe="/")


def s3_https_base(client: Any, bucket: str) -> str:
    """The https URL of `bucket`'s objects, ending in "/": virtual-hosted with the bucket's
    region on AWS (what Labelbox's IAM delegated access takes), `ENDPOINT/bucket/` on another
    endpoint. "" where the region cannot be learnt (denied)."""
    from botocore.exceptions import BotoCoreError, ClientError

    endpoint = str(client.meta.endpoint_url).rstrip("/")
    host = urlparse(endpoint).hostname or ""
    if not host.endswith(".amazonaws.com"):
        return f"{endpoint}/{quote(bucket)}/"
    try:
        reply = client.head_bucket(Bucket=bucket)
    except ClientError as e:  # AWS names the region in the reply to a refused HEAD too
        reply = e.response
    except BotoCoreError:
        return ""
    headers = (reply.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
    region = reply.get("BucketRegion") or headers.get("x-amz-bucket-region")
    return f"https://{bucket}.s3.{region}.amazonaws.com/" if region else ""


def check_bucket_names(formats: Sequence[str], locator: Locator, names: Sequence[str]) -> None:
    """Refuse, before anything is written, names no task of `formats` could point at."""
    b = locator.bucket
    if locator.url_prefix is not None or b is None:
        return
    if "labelbox" in formats and b.scheme == "s3" and not b.https:
        raise ConfigError(
            f"--tasks labelbox: the region of bucket {b.bucket!r} cannot be read (HeadBucket "
            "denied), and Labelbox needs https://BUCKET.s3.REGION.amazonaws.com/ URLs: give "
            f"--url-prefix https://{b.bucket}.s3.REGION.amazonaws.com/{b.prefix}"
        )
    # (the formats whose task names the object by its unencoded URI)
    uris = [f for f in formats if f == "label-studio" or (f == "labelbox" and b.scheme == "gs")]
    if uris:
        bad = [n for n in names if "?" in b.prefix + n or n != n.rstrip()]
        if bad:
            store = "GCS" if b.scheme == "gs" else "S3"
            raise ConfigError(
                f"--tasks {uris[0]}: {len(bad)} exported name(s) hold a '?' or end in a space "
                f"({bad[0]!r}), which a {b.scheme}:// URI cannot name as part of the key "
                f"(Label Studio's {store} storage reads '?' as the start of a query, and strips "
                "the URI); give --url-prefix with the https URL of the export prefix"
            )


def task_entries(
    written: Sequence[str],
    renamed: Mapping[str, str],
    info: Mapping[str, Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """One entry per file written (in `written`'s order): its name in the export, and what the
    pool knows of the sample (`info` by sample name: source_file, frame, run, tag, min_distance,
    crop_of, crop_box), None-valued facts left out."""
    back = {v: k for k, v in renamed.items()}
    out = []
    for name in written:
        sample = back.get(name, name)
        facts = {k: v for k, v in (info.get(sample) or {}).items() if v is not None}
        out.append({"file": name, "sample": sample, **facts})
    return out


def tasks_bytes(
    fmt: str,
    entries: Sequence[Mapping[str, Any]],
    locator: Locator,
    predictions: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> bytes:
    """The tasks file of `fmt` for `entries` (task_entries), UTF-8 JSON; with `predictions`
    (by file name: label_studio_prediction's), Label Studio's tasks carry them."""
    tasks: list[dict[str, Any]] = []
    for e in entries:
        url = locator.url(fmt, str(e["file"]))
        facts = {k: v for k, v in e.items() if k != "file"}
        if fmt == "label-studio":
            # `image` is the field of Label Studio's image templates (<Image value="$image"/>);
            # the rest show as columns in its data manager.
            task: dict[str, Any] = {"data": {"image": url, **facts}}
            if predictions and str(e["file"]) in predictions:
                task["predictions"] = list(predictions[str(e["file"])])
            tasks.append(task)
        else:  # Labelbox's data row import (the shape Lightly's v4 export writes)
            tasks.append({"row_data": url, "global_key": e["file"], "media_type": "IMAGE"})
    # One task a line, each by json's C encoder: json.dumps(tasks, indent=...) takes its
    # pure-Python encoder, which held ~100 strings a task until the end (2.8 GB for a million
    # tasks with predictions) and took most of the time the tasks added to an export.
    lines = ",\n".join(json.dumps(t, ensure_ascii=False) for t in tasks)
    return f"[\n{lines}\n]\n".encode() if tasks else b"[]\n"


# Label Studio's pre-annotations (`--pre-annotate TASK`): each result names the control tag of
# the project's labelling config (`from_name`) and its image tag (`to_name`), as the config
# label_studio_config writes them (Label Studio's "Object Detection with Bounding Boxes" and
# "Image Classification" templates, whose tags are named so).
LS_IMAGE = "image"
LS_CONTROL = {
    "object-detection": ("label", "RectangleLabels"),
    "classification": ("choice", "Choices"),
}


def label_studio_config(kind: str, categories: Sequence[str]) -> str:
    """The labelling config (Settings > Labeling Interface > Code) whose tags the pre-annotations
    of a `kind` task name, with one label per category."""
    name, tag = LS_CONTROL[kind]
    child = "Label" if tag == "RectangleLabels" else "Choice"
    labels = "".join(f"    <{child} value={quoteattr(c)}/>\n" for c in categories)
    return (
        f'<View>\n  <Image name="{LS_IMAGE}" value="$image"/>\n'
        f'  <{tag} name="{name}" toName="{LS_IMAGE}">\n{labels}  </{tag}>\n</View>\n'
    )


def label_studio_prediction(
    kind: str,
    labelled: Sequence[tuple[str, tuple[float, float, float, float] | None, float | None]],
    size: tuple[int, int],
    model_version: str,
) -> dict[str, Any]:
    """One Label Studio prediction of a picture `size` = (width, height) pixels as shown, from
    its predictions (lightly.pre_annotations: category, box [x, y, w, h] in those pixels, cut
    to its part inside the picture (part_inside), or None, score): each box in percent of the
    picture. The prediction's score is its results' mean, where each has one."""
    name, tag = LS_CONTROL[kind]
    width, height = size
    result: list[dict[str, Any]] = []
    for category, box, score in labelled:
        item: dict[str, Any] = {"from_name": name, "to_name": LS_IMAGE, "type": tag.lower()}
        if box is None:
            item["value"] = {"choices": [category]}
        else:
            x, y, w, h = box
            item["value"] = {
                "x": 100 * x / width,
                "y": 100 * y / height,
                "width": 100 * w / width,
                "height": 100 * h / height,
                "rotation": 0,
                "rectanglelabels": [category],
            }
            item["original_width"], item["original_height"] = width, height
            item["image_rotation"] = 0
        if score is not None:
            item["score"] = score
        result.append(item)
    prediction: dict[str, Any] = {"model_version": model_version, "result": result}
    scores = [r["score"] for r in result if "score" in r]
    if scores and len(scores) == len(result):
        prediction["score"] = sum(scores) / len(scores)
    return prediction


def part_inside(
    box: tuple[float, float, float, float], size: tuple[int, int]
) -> tuple[float, float, float, float] | None:
    """The part of `box` [x, y, w, h] inside a picture `size` = (width, height) as x0, y0, x1,
    y1 in its pixels; None where the box lies wholly outside it."""
    x, y, w, h = box
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(float(size[0]), x + w), min(float(size[1]), y + h)
    return None if x1 <= x0 or y1 <= y0 else (x0, y0, x1, y1)
