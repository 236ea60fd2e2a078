"""Where a target's tables live and who may touch them: names, permissions, listing.

Light on purpose (no Arrow, no delta-rs at import): ``lakeforge tables list`` needs only
this. Local roots are listed with the standard library, object stores with pyarrow.
"""

from __future__ import annotations

import builtins
import os

from lakeforge.errors import PermissionDeniedError, TableNotFoundError
from lakeforge.lakehouse._names import TableName
from lakeforge.project import Project, Target, is_remote_uri

TABLES_DIR = "tables"


class TableLocations:
    """Table names, the target owning each catalog, storage locations and listing."""

    def __init__(self, project: Project, target: Target) -> None:
        self.project = project
        self.target = target

    # -- names, locations and permissions ---------------------------------------------

    def name(self, name: str | TableName) -> TableName:
        """Parse a table name; a two-part ``schema.table`` gets this target's catalog."""
        if isinstance(name, TableName):
            return name
        return TableName.parse(name, default_catalog=self.target.catalog)

    def owner_of(self, name: TableName, *, write: bool) -> Target:
        """The target that owns ``name``'s catalog, if this target may read (or write) it."""
        owner = self.project.target_for_catalog(name.catalog)
        if owner is None:
            raise TableNotFoundError(
                f"table {name}: unknown catalog {name.catalog!r}; "
                f"catalogs in project {self.project.name!r}: {', '.join(self.project.catalogs)}"
            )
        if owner.name == self.target.name:
            return owner
        if write:
            raise PermissionDeniedError(
                f"target {self.target.name!r} cannot write {name}: a target writes only its own "
                f"catalog ({self.target.catalog!r})",
                hint=f"run with -t {owner.name} to write that table",
            )
        if owner.name not in self.target.read_from:
            raise PermissionDeniedError(
                f"target {self.target.name!r} may not read {name} from target {owner.name!r}",
                hint=f"add {owner.name!r} to targets.{self.target.name}.read_from in lakeforge.yaml",
            )
        return owner

    def location(self, name: str | TableName) -> str:
        """The storage URI of a table (whether or not it exists)."""
        table = self.name(name)
        owner = self.owner_of(table, write=False)
        return owner.path(TABLES_DIR, table.schema, table.table)

    def list(
        self, *, catalog: str | None = None, schema: str | None = None
    ) -> builtins.list[TableName]:
        """Tables in a catalog (default: this target's), optionally in one schema."""
        catalog = (catalog or self.target.catalog).lower()
        owner = self.owner_of(TableName(catalog, "x", "x"), write=False)
        found: builtins.list[TableName] = []
        for schema_name, schema_path in _subdirs(owner.path(TABLES_DIR)):
            if schema and schema_name != schema.lower():
                continue
            for table_name, table_path in _subdirs(schema_path):
                if _is_dir(f"{table_path}/_delta_log"):
                    found.append(TableName(catalog, schema_name, table_name))
        return sorted(found)


def _subdirs(base: str) -> builtins.list[tuple[str, str]]:
    """(name, path) of the visible sub-folders of ``base``, local or in an object store."""
    if not is_remote_uri(base):
        folder = base.removeprefix("file://")
        if not os.path.isdir(folder):
            return []
        with os.scandir(folder) as entries:
            return [(e.name, e.path) for e in entries if e.is_dir() and not e.name.startswith(".")]
    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(base)
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return [
        (i.base_name, f"{base.split('://')[0]}://{i.path}")
        for i in infos
        if i.type == pafs.FileType.Directory and not i.base_name.startswith(".")
    ]


def _is_dir(location: str) -> bool:
    """Whether ``location`` is a folder: one stat, without listing what is in it."""
    if not is_remote_uri(location):
        return os.path.isdir(location.removeprefix("file://"))
    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(location)
    return bool(fs.get_file_info(path).type == pafs.FileType.Directory)
