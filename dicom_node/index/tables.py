"""Tables of the instance index. Owned by dicom_node; other packages refer to rows by UID."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

studies = Table(
    "studies",
    metadata,
    Column("study_instance_uid", String(64), primary_key=True),
    Column("patient_id", String(64)),
    Column("accession_number", String(64)),
    Column("study_date", String(8)),
    Column("first_received_at", DateTime(timezone=True), nullable=False),
    Column("last_received_at", DateTime(timezone=True), nullable=False),
    # receiving -> ready (StudyReady owed) -> emitted; back to receiving when an instance arrives.
    Column("state", String(16), nullable=False, default="receiving", index=True),
    Column("completions", Integer, nullable=False, default=0),
    Column("completed_at", DateTime(timezone=True)),
    # Retention: set when the study's files were deleted (its series and instance rows go, this
    # row stays as the tombstone); an instance arriving later makes the study live again.
    Column("deleted_at", DateTime(timezone=True)),
)

series = Table(
    "series",
    metadata,
    Column("series_instance_uid", String(64), primary_key=True),
    Column("study_instance_uid", String(64), nullable=False, index=True),
    Column("modality", String(16)),
    Column("body_part_examined", String(64)),
    Column("series_description", String(64)),
    Column("protocol_name", String(64)),
    Column("image_type", String(256)),
    Column("series_number", Integer),
    Column("slice_thickness", Float),
    Column("calling_ae", String(16)),
    Column("called_ae", String(16)),
    Column("instance_count", Integer, nullable=False, default=0),
    Column("expected_count", Integer),
    Column("bytes_received", BigInteger, nullable=False, default=0),
    Column("first_received_at", DateTime(timezone=True), nullable=False),
    Column("last_received_at", DateTime(timezone=True), nullable=False),
    Column("quiet_period_s", Float, nullable=False),
    # The persisted completion timer: the series is complete once this moment has passed.
    Column("complete_after", DateTime(timezone=True), nullable=False, index=True),
    Column("state", String(16), nullable=False, default="receiving", index=True),
    Column("completed_at", DateTime(timezone=True)),
    Column("late_instances", Integer, nullable=False, default=0),
)

instances = Table(
    "instances",
    metadata,
    Column("sop_instance_uid", String(64), primary_key=True),
    Column("sop_class_uid", String(64), nullable=False),
    Column("series_instance_uid", String(64), nullable=False, index=True),
    Column("study_instance_uid", String(64), nullable=False),
    Column("instance_number", Integer),
    Column("transfer_syntax_uid", String(64), nullable=False),
    Column("image_type", String(256)),
    Column("path", Text, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("calling_ae", String(16)),
    # Indexed: the console's Overview counts instances per minute over the last half hour.
    Column("received_at", DateTime(timezone=True), nullable=False, index=True),
    Column("duplicates", Integer, nullable=False, default=0),
    # SHA-256 of the Pixel Data value as received (of the whole data set when it has no pixels):
    # a repeated SOP Instance UID is compared on it without decoding anything.
    Column("content_sha256", String(64)),
)

ingest_failures = Table(
    "ingest_failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("calling_ae", String(16)),
    Column("peer_address", String(64)),
    Column("sop_class_uid", String(64)),
    Column("sop_instance_uid", String(64)),
    Column("status", Integer, nullable=False),
    Column("reason_code", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("kept_path", Text),
)

# A second instance under an indexed SOP Instance UID whose content differs: answered with a
# warning, its bytes set aside under spool/.rejected/conflicts/, the indexed instance untouched.
ingest_conflicts = Table(
    "ingest_conflicts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("calling_ae", String(16)),
    Column("peer_address", String(64)),
    Column("sop_class_uid", String(64), nullable=False),
    Column("sop_instance_uid", String(64), nullable=False, index=True),
    Column("study_instance_uid", String(64), nullable=False),
    Column("series_instance_uid", String(64), nullable=False),
    # Names of what differs (patient_id, study, series, content), never the values (PHI).
    Column("differences", String(128), nullable=False),
    Column("status", Integer, nullable=False),
    Column("kept_path", Text),
    Column("indexed_path", Text, nullable=False),
)
