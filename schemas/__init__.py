"""What the data is: the schema model and the schema files of known data sets."""

from pathlib import Path

from schemas.model import (DEFAULT_MISSING, Column, CsvFormat, Schema, SchemaError, dump_schema,
                           load_schema,
                           pandas_dtype,
                           schema_from_dict)
from schemas.image import (ImageSchema, image_schema_from_dict, is_image_schema,
                           load_image_schema)

SCHEMA_DIR = Path(__file__).parent

__all__ = ["DEFAULT_MISSING", "Column", "CsvFormat", "Schema", "SchemaError", "SCHEMA_DIR", "dump_schema",
           "load_schema", "pandas_dtype", "schema_from_dict"]
__all__ += ["ImageSchema", "image_schema_from_dict", "is_image_schema", "load_image_schema"]
