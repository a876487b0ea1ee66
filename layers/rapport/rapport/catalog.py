"""The catalog file: the products signals are matched against (README, "Catalog")."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rapport.models import Product


class CatalogFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    about: str = ""
    products: list[Product] = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _unique(self) -> CatalogFile:
        ids = [product.product_id for product in self.products]
        repeated = sorted({product for product in ids if ids.count(product) > 1})
        if repeated:
            raise ValueError(f"product ids must be unique: {', '.join(repeated)}")
        return self

    @classmethod
    def load(cls, path: Path) -> CatalogFile:
        return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
