"""The S3 fixtures of tests/test_s3.py, for the other modules that test against moto over HTTP.
Importing this skips the module where boto3 or moto's server is missing. A module binds them to
its own names, where pytest finds them (each module's own: a moto server per module):

    from ._s3 import S3_FIXTURES

    moto_endpoint, s3_env, s3, new_bucket = S3_FIXTURES

(an assignment, not `from ._s3 import s3`: a test's `s3` parameter would redefine an import.)
"""

from __future__ import annotations

import pytest

pytest.importorskip("boto3")
pytest.importorskip("moto.server")

from . import test_s3

S3_FIXTURES = (test_s3.moto_endpoint, test_s3.s3_env, test_s3.s3, test_s3.new_bucket)
