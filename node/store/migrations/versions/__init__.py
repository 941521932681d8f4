"""Migration revisions, chained by `down_revision`; file names are free, revision ids are not."""
