"""One-time export of a local transformers/sentence-transformers model to ONNX.

Run as ``python -m memvid_mcp.search.onnx_export SRC DST`` by ``embed.convert_local``, in a
subprocess, so the server never imports torch; with ``--int8`` SRC is a directory holding an
ONNX model, quantised (dynamic, per-channel int8 weights) into DST for the ``onnx-int8``
provider. Uses the legacy exporter (``dynamo=False``,
opset 17), which works offline, through a keyword-argument wrapper because transformers 5
changed the positional order of ``BertModel.forward``. Exit code 3: torch, transformers or
onnx is not installed (the ``torch`` extra). ``--parent PID``: die with that process (Linux
``PR_SET_PDEATHSIG``), so a converter never outlives the command that started it (ADR 0015).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

_COPY = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "config.json",
    "sentence_bert_config.json",
    "modules.json",
    "1_Pooling/config.json",
)


def export(src: Path, dst: Path) -> Path:
    """Write ``dst/model.onnx`` (output ``last_hidden_state``) and the tokenizer files."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(src), local_files_only=True)
    model.eval()

    class Wrapper(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.inner(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
            )
            return out.last_hidden_state

    dst.mkdir(parents=True, exist_ok=True)
    ids = torch.ones((2, 8), dtype=torch.long)
    args = (ids, torch.ones_like(ids), torch.zeros_like(ids))
    axes = {0: "batch", 1: "sequence"}
    target = dst / "model.onnx"
    with torch.no_grad():
        torch.onnx.export(
            Wrapper(model),
            args,
            str(target),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={
                "input_ids": axes,
                "attention_mask": axes,
                "token_type_ids": axes,
                "last_hidden_state": axes,
            },
            opset_version=17,
            dynamo=False,
        )
    for name in _COPY:
        if (src / name).is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / name, dst / name)
    return target


def quantize(src: Path, dst: Path) -> Path:
    """Write ``dst/model.onnx`` with int8 per-channel weights (needs the ``onnx`` package)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source = next(p for p in (src / "onnx" / "model.onnx", src / "model.onnx") if p.is_file())
    dst.mkdir(parents=True, exist_ok=True)
    target = dst / "model.onnx"
    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True)
    for name in _COPY:
        if (src / name).is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / name, dst / name)
    return target


PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent exits (Linux; elsewhere the
    parent's close/atexit terminates it). Exit at once if the parent has already gone."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the request took effect
        sys.exit(4)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if "--parent" in args:
        at = args.index("--parent")
        parent = args[at + 1] if at + 1 < len(args) else ""
        del args[at: at + 2]
        if not parent.isdigit():
            sys.stderr.write("--parent needs a process id\n")
            return 2
        die_with_parent(int(parent))
    int8 = "--int8" in args
    args = [a for a in args if a != "--int8"]
    if len(args) != 2:
        sys.stderr.write("usage: python -m memvid_mcp.search.onnx_export"
                         " [--parent PID] [--int8] SRC DST\n")
        return 2
    if int8:
        try:
            import onnx
        except ImportError as exc:
            sys.stderr.write(f'{exc}: pip install "memvid-mcp[torch]" (or onnx)\n')
            return 3
        quantize(Path(args[0]), Path(args[1]))
        return 0
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        sys.stderr.write(f'{exc}: pip install "memvid-mcp[torch]"\n')
        return 3
    export(Path(args[0]), Path(args[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
