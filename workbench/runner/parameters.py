"""The ``parameters`` cell of a template: what it declares, and checking values against it.

One ``name = literal`` per line (``name: type = literal`` is accepted too). The literal's type is
the parameter's type; a value of another type is an error (an ``int`` is accepted for a
``float``). A trailing comment ``# required`` makes the parameter required: its literal is a
placeholder (often ``None``) and a run without a value is refused. A parameter whose default is
``None`` and not required takes any literal. Values given as text on the command line are
converted to the default's type (``-p alpha 0.1``), and a string default keeps the text as it is
(``-p label 007`` stays ``"007"``, papermill would make it 7). Names are checked to be
identifiers: papermill writes them into the injected cell verbatim.
"""
from __future__ import annotations

import ast
import contextlib
import io
import json
import keyword
import os
import sys
import tokenize
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.config import get_settings
from workbench.errors import ParameterError


@dataclass(frozen=True)
class TemplateParameter:
    """One line of a template's ``parameters`` cell.

    Attributes
    ----------
    name : str
        Python identifier.
    default : object
        The literal in the cell (a placeholder when ``required``).
    required : bool
        The line ends with ``# required``.
    type : type or None
        ``type(default)``; None when the default is ``None`` (any literal accepted).
    help : str
        The trailing comment, if any.
    """

    name: str
    default: Any
    required: bool
    type: type | None
    help: str = ""


def template_path(template: str | os.PathLike) -> Path:
    """The notebook of a template name (``ab_test`` -> ``templates/ab_test.ipynb``) or a path."""
    text = str(template)
    path = Path(text).expanduser()
    if path.suffix == ".ipynb" or os.sep in text:
        if path.suffix != ".ipynb":  # bad input, whatever the file holds (never read)
            raise ParameterError(f"template {text!r} is not a notebook: expected a template "
                                 "name or a path to a .ipynb file")
        if path.is_file():
            return path.resolve()
        raise ParameterError(f"template notebook not found: {path}")
    templates_dir = get_settings().templates_dir
    candidate = templates_dir / f"{text}.ipynb"
    if candidate.is_file():
        return candidate
    known = sorted(p.stem for p in templates_dir.glob("*.ipynb"))
    raise ParameterError(f"unknown template {text!r}; available in {templates_dir}: {known}")


def parameters_cell(nb) -> tuple[int, str]:
    """Index and source of the cell tagged ``parameters`` (``(-1, "")`` if there is none)."""
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            return index, cell.source
    return -1, ""


def parse_parameters(source: str, where: str = "parameters cell") -> dict[str, TemplateParameter]:
    """Parse a ``parameters`` cell into :class:`TemplateParameter` objects (literals only)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ParameterError(f"{where}: not valid Python ({exc})") from exc
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    params: dict[str, TemplateParameter] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(
                stmt.targets[0], ast.Name):
            name, value = stmt.targets[0].id, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value:
            name, value = stmt.target.id, stmt.value
        else:
            raise ParameterError(f"{where}, line {stmt.lineno}: only `name = literal` lines are "
                                 "allowed in a parameters cell")
        try:
            default = ast.literal_eval(value)
        except ValueError as exc:
            raise ParameterError(f"{where}, line {stmt.lineno}: the default of {name!r} is not a "
                                 "literal") from exc
        comment = comments.get(stmt.end_lineno or stmt.lineno, "")
        required = comment.lower().startswith("required")
        params[name] = TemplateParameter(name, default, required,
                                         None if default is None else type(default), comment)
    return params


def read_parameters(template: str | os.PathLike) -> dict[str, TemplateParameter]:
    """The parameters a template declares (empty if it has no ``parameters`` cell)."""
    path = template_path(template)
    _, source = parameters_cell(read_notebook(path))
    return parse_parameters(source, f"template {path.name}, parameters cell")


@contextlib.contextmanager
def _without_iri_grammar():
    """Import nbformat without jsonschema importing ``rfc3987_syntax`` (when nothing has
    imported jsonschema yet).

    nbformat imports jsonschema, whose format checkers import ``rfc3987_syntax`` if installed
    (a Jupyter extra); that module builds 38 lark grammars on import: measured 2.5-3 s at load
    ~6 on this 2-core machine (6-8 s of every ``workbench run`` before the bytecode was
    compiled). It serves only the "iri" string format, which no notebook schema uses;
    jsonschema skips that check when the import fails (``sys.modules[name] = None`` makes it
    fail). The entry is removed afterwards: later imports of ``rfc3987_syntax`` work as usual.
    """
    blocked = "jsonschema" not in sys.modules and "rfc3987_syntax" not in sys.modules
    if blocked:
        sys.modules["rfc3987_syntax"] = None
    try:
        yield
    finally:
        if blocked and sys.modules.get("rfc3987_syntax", False) is None:
            del sys.modules["rfc3987_syntax"]


def read_notebook(path: str | os.PathLike):
    """The notebook at ``path`` (nbformat v4).

    Raises
    ------
    ParameterError
        The file is not a Jupyter notebook. The message names the path only: nothing of the
        file's content is echoed (it may be any file, ``/etc/passwd`` included).
    """
    with _without_iri_grammar():
        import nbformat

    path = Path(path)
    try:
        return nbformat.read(path, as_version=4)
    except OSError as exc:
        raise ParameterError(f"template notebook {str(path)!r} cannot be read "
                             f"({(exc.strerror or type(exc).__name__).lower()})") from None
    except Exception:  # noqa: BLE001 - invalid JSON, not a notebook, unknown nbformat
        raise ParameterError(f"{str(path)!r} is not a Jupyter notebook (.ipynb JSON)") from None


_TRUE, _FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}


def _convert(param: TemplateParameter, value: Any, from_text: bool) -> Any:
    """``value`` as the parameter's type, or ParameterError naming the parameter."""
    kind = param.type
    bad = ParameterError(f"parameter {param.name!r}: expected "
                         f"{kind.__name__ if kind else 'a literal'}, got {value!r}")
    if from_text and isinstance(value, str):
        if kind is str:
            return value
        if kind is bool:
            if value.lower() in _TRUE:
                return True
            if value.lower() in _FALSE:
                return False
            raise bad
        if kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                raise bad from None
        if value.lower() in ("none", "null"):
            value = None
        else:
            try:  # lists, dicts and untyped values: a Python or JSON literal, else the text
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                try:
                    value = json.loads(value)
                except ValueError:
                    if kind is not None:
                        raise bad from None
    if value is None:
        if kind is None or param.required:
            if param.required:
                raise ParameterError(f"parameter {param.name!r} is required")
            return None
        raise bad
    if kind is None:
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is list and isinstance(value, tuple):
        return list(value)
    if kind is int and isinstance(value, bool):
        raise bad
    if not isinstance(value, kind):
        raise bad
    return value


def validate_parameters(declared: Mapping[str, TemplateParameter], values: Mapping[str, Any],
                        text_values: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Check values against the declared parameters; returns the values to inject.

    Parameters
    ----------
    declared : dict
        From :func:`read_parameters`.
    values : dict
        Typed values (a YAML file, Python).
    text_values : dict, optional
        Values given as text (``-p NAME VALUE``), converted to each default's type; they win
        over ``values``.

    Raises
    ------
    ParameterError
        A name is not an identifier or is unknown, a required value is missing, a type is wrong.
    """
    merged = {**{k: (v, False) for k, v in values.items()},
              **{k: (v, True) for k, v in (text_values or {}).items()}}
    out: dict[str, Any] = {}
    for name, (value, from_text) in merged.items():
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise ParameterError(f"parameter name {name!r} is not a Python identifier")
        if name not in declared:
            raise ParameterError(f"unknown parameter {name!r}; the template declares "
                                 f"{sorted(declared)}")
        out[name] = _convert(declared[name], value, from_text)
    missing = [p.name for p in declared.values() if p.required and p.name not in out]
    if missing:
        raise ParameterError(f"missing required parameter(s): {', '.join(missing)}")
    return out


def read_parameter_file(path: str | os.PathLike | None) -> dict:
    """The parameter values in a YAML file (``-f params.yml``); empty for no path."""
    if not path:
        return {}
    import yaml

    file = Path(path)
    if not file.is_file():
        raise ParameterError(f"parameters file not found: {file}")
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParameterError(f"{file}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ParameterError(f"{file}: expected a mapping of parameter names to values")
    return data
