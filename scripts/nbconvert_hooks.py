# nbconvert config loaded by scripts/run-notebooks.ts (`jupyter nbconvert --config <this file>`).
#
# tslab reports a failing cell only through its execute reply (no ename/evalue) and the
# stderr text it streams; nbclient's error message carries neither the cell number nor that
# text. These hooks print one JSON line per event on stderr, prefixed so the runner can pick
# them out: live progress, and for a failure the cell index, its source and its stderr.
import json
import sys

PREFIX = "[lora-tfjs-event] "


def _emit(event, **fields):
    sys.stderr.write(PREFIX + json.dumps(dict(event=event, **fields)) + "\n")
    sys.stderr.flush()


def _stderr_text(cell):
    return "".join(
        o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream" and o.get("name") == "stderr"
    )


def _on_cell_start(cell, cell_index, **_):
    _emit("cell_start", index=cell_index, kind=cell.get("cell_type"))


def _on_cell_executed(cell, cell_index, execute_reply, **_):
    status = execute_reply.get("content", {}).get("status", "unknown")
    _emit("cell_done", index=cell_index, status=status)


def _on_cell_error(cell, cell_index, execute_reply, **_):
    content = execute_reply.get("content", {})
    _emit(
        "cell_error",
        index=cell_index,
        source=cell.get("source", ""),
        stderr=_stderr_text(cell),
        ename=content.get("ename", ""),
        evalue=content.get("evalue", ""),
        traceback=content.get("traceback", []),
    )


c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)
c.ExecutePreprocessor.on_cell_start = _on_cell_start
c.ExecutePreprocessor.on_cell_executed = _on_cell_executed
c.ExecutePreprocessor.on_cell_error = _on_cell_error
