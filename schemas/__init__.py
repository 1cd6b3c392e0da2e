"""What the data is: the schema model and the schema files of known data sets."""

from pathlib import Path

from schemas.image import (
           ImageSchema,
           image_schema_from_dict,
           is_image_schema,
           load_image_schema,
)
from schemas.model import (
           DEFAULT_MISSING,
           Column,
           CsvFormat,
           Draft,
           Schema,
           SchemaError,
           pandas_dtype,
           refuse_unreviewed_draft,
)
from schemas.parse import dump_schema, load_schema, schema_from_dict

SCHEMA_DIR = Path(__file__).parent

__all__ = ["DEFAULT_MISSING", "Column", "CsvFormat", "Draft", "Schema", "SchemaError",
           "SCHEMA_DIR", "dump_schema", "load_schema", "pandas_dtype", "schema_from_dict",
           "ImageSchema", "image_schema_from_dict", "is_image_schema", "load_image_schema",
           "refuse_unreviewed_draft"]
