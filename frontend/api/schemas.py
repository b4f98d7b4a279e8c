"""What the REST API takes and gives, as marshmallow schemas (they make its
OpenAPI document too)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from ..core.formatting import utc_stamp
from ..core.models import AnalysisState


class UtcDateTime(fields.DateTime):
    """A time as RFC 3339 in UTC with its ``Z`` (``utc_stamp``)."""

    def _serialize(self, value, attr, obj, **kwargs):
        return utc_stamp(value)


class ProjectSchema(Schema):
    id = fields.Int(dump_only=True)
    name = fields.Str()
    role = fields.Str(
        dump_only=True,
        metadata={"description": "yours: owner, read-write or read-only"},
    )
    description = fields.Str()
    created_at = UtcDateTime(dump_only=True)
    updated_at = UtcDateTime(dump_only=True)
    file_count = fields.Int(dump_only=True)
    total_bytes = fields.Int(dump_only=True)
    analyses = fields.Int(dump_only=True, metadata={"description": "analyses run"})


class ProjectListArgs(Schema):
    owned = fields.Bool(load_default=False, metadata={"description": "only yours"})
    shared = fields.Bool(
        load_default=False, metadata={"description": "only those shared with you"}
    )


class NewProjectSchema(Schema):
    name = fields.Str(required=True, validate=validate.Length(min=1, max=120))
    description = fields.Str(load_default="", validate=validate.Length(max=5000))


class ProjectChangeSchema(Schema):
    name = fields.Str(validate=validate.Length(min=1, max=120))
    description = fields.Str(validate=validate.Length(max=5000))


class FileSchema(Schema):
    id = fields.Int()
    path = fields.Str(metadata={"description": "path in the project, with '/'"})
    name = fields.Str()
    is_dir = fields.Bool()
    size = fields.Int(metadata={"description": "bytes (0 for folders)"})
    modified_at = UtcDateTime()


class ChecksumSchema(Schema):
    path = fields.Str()
    size = fields.Int(metadata={"description": "bytes"})
    sha256 = fields.Str(metadata={"description": "SHA-256 of the file's bytes, hex"})


class UploadArgs(Schema):
    path = fields.Str(
        required=True,
        metadata={"description": "where to store the file: 'reads/a.fastq'"},
    )
    on_clash = fields.Str(
        load_default="ask",
        validate=validate.OneOf(["ask", "replace", "keep", "skip"]),
        metadata={
            "description": "if the name exists: refuse (ask, 409), replace it, "
            "keep both (a numbered name) or skip"
        },
    )
    extract = fields.Bool(
        load_default=False,
        metadata={"description": "unpack a .zip, .tar or .tar.gz into a folder"},
    )


class UploadSchema(Schema):
    status = fields.Str(
        metadata={"description": "stored, replaced, extracted, skipped"}
    )
    path = fields.Str()
    message = fields.Str()


class PipelineSchema(Schema):
    name = fields.Str()
    title = fields.Str()
    description = fields.Str()
    version = fields.Str()
    image = fields.Str()
    ready = fields.Bool(metadata={"description": "its image is built and checked"})
    message = fields.Str(metadata={"description": "why it cannot run yet"})
    parameters = fields.Dict(
        metadata={"description": "the parameters' JSON Schema (submit these)"}
    )


class NewAnalysisSchema(Schema):
    project_id = fields.Int(required=True)
    pipeline = fields.Str(required=True)
    parameters = fields.Dict(
        load_default=dict,
        metadata={"description": "values checked against the pipeline's schema"},
    )


class AnalysisSchema(Schema):
    id = fields.Int()
    project_id = fields.Int()
    pipeline = fields.Str()
    pipeline_version = fields.Str()
    state = fields.Str()
    parameters = fields.Dict(attribute="params")
    submitted_at = UtcDateTime()
    started_at = UtcDateTime(allow_none=True)
    finished_at = UtcDateTime(allow_none=True)
    progress_percent = fields.Float()
    progress_message = fields.Str()
    error_summary = fields.Str(allow_none=True)
    exit_code = fields.Int(allow_none=True)
    output_bytes = fields.Int()


class AnalysisListArgs(Schema):
    state = fields.Str(validate=validate.OneOf([s.value for s in AnalysisState]))
    pipeline = fields.Str()
    project_id = fields.Int()
    page = fields.Int(load_default=1, validate=validate.Range(min=1))
    page_size = fields.Int(load_default=50, validate=validate.Range(min=1, max=200))


class AnalysisPageSchema(Schema):
    items = fields.List(fields.Nested(AnalysisSchema))
    page = fields.Int()
    page_size = fields.Int()
    total = fields.Int()
    pages = fields.Int()


class CancelSchema(Schema):
    message = fields.Str()
    state = fields.Str()


class LogArgs(Schema):
    offset = fields.Int(load_default=0, validate=validate.Range(min=0))


class LogSchema(Schema):
    text = fields.Str(metadata={"description": "the log from the offset asked"})
    offset = fields.Int(metadata={"description": "ask from here next time"})
    state = fields.Str()
    finished = fields.Bool()


class OutputSchema(Schema):
    path = fields.Str()
    size = fields.Int()


class AddOutputsSchema(Schema):
    project_id = fields.Int(
        required=True, metadata={"description": "a project you may change"}
    )
    folder = fields.Str(
        load_default="",
        metadata={"description": "folder in the project (default: from-analysis-N-…)"},
    )
    paths = fields.List(
        fields.Str(),
        load_default=None,
        metadata={"description": "outputs to add (left out: all of them)"},
    )
    on_clash = fields.Str(
        load_default="keep",
        validate=validate.OneOf(["keep", "replace", "skip"]),
        metadata={"description": "if a name exists: keep both, replace, or skip"},
    )


class AddedOutputSchema(Schema):
    path = fields.Str(metadata={"description": "where it is in the project"})
    status = fields.Str(
        metadata={"description": "stored, replaced, kept, skipped or refused"}
    )
    message = fields.Str()


class AddedOutputsSchema(Schema):
    project_id = fields.Int()
    folder = fields.Str()
    results = fields.List(fields.Nested(AddedOutputSchema))


class StorageSchema(Schema):
    quota_bytes = fields.Int(metadata={"description": "what you may keep"})
    used_bytes = fields.Int(metadata={"description": "what you keep now, in all"})
    free_bytes = fields.Int(metadata={"description": "quota left (0 when over)"})
    files_bytes = fields.Int(metadata={"description": "your projects' files"})
    outputs_bytes = fields.Int(
        metadata={"description": "analyses in your projects: outputs and logs"}
    )
    uploading_bytes = fields.Int(
        metadata={"description": "set aside for uploads in progress"}
    )


# --- Batches ---------------------------------------------------------------------


class NewBatchSchema(Schema):
    project_id = fields.Int(required=True)
    pipeline = fields.Str(required=True)
    parameters = fields.Dict(
        load_default=dict,
        metadata={"description": "the values every analysis of the batch shares"},
    )
    files = fields.List(
        fields.Str(),
        metadata={"description": "the project's files, one analysis each"},
    )
    pattern = fields.Str(
        metadata={
            "description": "or a pattern over the project's paths ('reads/*.fq.gz'); "
            "one analysis per file it matches"
        }
    )


class BatchRowSchema(Schema):
    id = fields.Int(metadata={"description": "the analysis"})
    input = fields.Str(metadata={"description": "the file it runs on"})
    state = fields.Str()
    progress_percent = fields.Float()
    queue_position = fields.Int(allow_none=True)
    error_summary = fields.Str(allow_none=True)


class BatchSummarySchema(Schema):
    id = fields.Int()
    project_id = fields.Int()
    pipeline = fields.Str()
    field = fields.Str(metadata={"description": "the parameter that varies"})
    created_at = UtcDateTime()
    counts = fields.Dict(
        keys=fields.Str(), values=fields.Int(), metadata={"description": "per state"}
    )


class BatchSchema(BatchSummarySchema):
    analyses = fields.List(fields.Nested(BatchRowSchema))


class BatchListArgs(Schema):
    project_id = fields.Int(metadata={"description": "only this project's"})


# --- Groups, shares and links ------------------------------------------------------


class NewGroupSchema(Schema):
    name = fields.Str(required=True)
    description = fields.Str(load_default="")


class MemberSchema(Schema):
    id = fields.Int()
    email = fields.Str()
    joined = fields.Bool(metadata={"description": "false while only invited"})


class GroupSchema(Schema):
    id = fields.Int()
    name = fields.Str()
    description = fields.Str()
    owner = fields.Str(metadata={"description": "the owner's address"})
    role = fields.Str(metadata={"description": "yours: owner, member or invited"})
    members = fields.List(
        fields.Nested(MemberSchema),
        metadata={"description": "members and invitations (once you have joined)"},
    )


class InviteSchema(Schema):
    email = fields.Email(required=True)


class NewShareSchema(Schema):
    email = fields.Str(metadata={"description": "a person's address, or"})
    group_id = fields.Int(metadata={"description": "one of your groups"})
    access = fields.Str(
        load_default="read-only", validate=validate.OneOf(["read-only", "read-write"])
    )


class ShareSchema(Schema):
    id = fields.Int()
    project_id = fields.Int()
    email = fields.Str(allow_none=True)
    group_id = fields.Int(allow_none=True)
    group = fields.Str(allow_none=True, metadata={"description": "its name"})
    access = fields.Str()
    created_at = UtcDateTime()


class NewLinkSchema(Schema):
    days = fields.Int(
        load_default=None,
        allow_none=True,
        metadata={"description": "how long it works (none: until revoked)"},
    )


class LinkSchema(Schema):
    id = fields.Int()
    analysis_id = fields.Int()
    prefix = fields.Str(metadata={"description": "the secret's first characters"})
    url = fields.Str(
        metadata={"description": "the link itself, in the answer that made it only"}
    )
    created_at = UtcDateTime()
    expires_at = UtcDateTime(allow_none=True)
    works = fields.Str(metadata={"description": "until when, or why no longer"})
