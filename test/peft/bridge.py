"""A long-lived helper for the PEFT interop tests: one JSON request per line on stdin, one
JSON reply per line on stdout. It builds PyTorch base models, trains-like (seeded random
values) and saves PEFT adapters, loads lora-tfjs adapters with PEFT, and reports outputs,
merged and unmerged, plus every warning PEFT raised. Kept in one process so torch and peft
are imported once for the whole suite."""

import contextlib
import math
import json
import logging
import os
import sys
import traceback
import warnings

import torch
from torch import nn
import peft
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors import safe_open
from safetensors.torch import load_file, save_file

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


class FC(nn.Module):
    """The reference's SimpleLinearModel, generalised: fc1..fcN, ReLU between."""

    def __init__(self, dims, bias):
        super().__init__()
        self.n = len(dims) - 1
        for i in range(self.n):
            setattr(self, f"fc{i + 1}", nn.Linear(dims[i], dims[i + 1], bias=bias))

    def forward(self, x):
        for i in range(self.n):
            x = getattr(self, f"fc{i + 1}")(x)
            if i < self.n - 1:
                x = torch.relu(x)
        return x


class Nested(nn.Module):
    def __init__(self, dims, bias):
        super().__init__()
        self.mlp = FC(dims, bias)

    def forward(self, x):
        return self.mlp(x)


def sequential(dims, bias):
    layers = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1], bias=bias))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Modules(nn.Module):
    """Named nn.Linear / nn.Embedding / nn.Conv2d modules mirroring the layers of a tfjs
    model, each run on its own input. Inputs and outputs of convolutions are NHWC (tfjs's
    layout), permuted to and from PyTorch's NCHW here."""

    def __init__(self, specs):
        super().__init__()
        self.specs = specs
        for s in specs:
            if s["type"] == "linear":
                m = nn.Linear(s["in"], s["out"], bias=s.get("bias", True))
            elif s["type"] == "embedding":
                m = nn.Embedding(s["num"], s["dim"])
            else:
                m = nn.Conv2d(s["in"], s["out"], tuple(s["k"]), stride=s.get("stride", 1), padding=s.get("padding", 0), dilation=s.get("dilation", 1), bias=s.get("bias", True))
            setattr(self, s["name"], m)

    def forward(self, x):
        out = {}
        for s in self.specs:
            m, v = getattr(self, s["name"]), x[s["name"]]
            if s["type"] == "embedding":
                out[s["name"]] = m(torch.tensor(v, dtype=torch.long)).tolist()
            elif s["type"] == "conv2d":
                out[s["name"]] = m(torch.tensor(v, dtype=torch.float32).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).tolist()
            else:
                out[s["name"]] = m(torch.tensor(v, dtype=torch.float32)).tolist()
        return out


def build_base(spec):
    torch.manual_seed(spec.get("seed", 0))
    kind, dims, bias = spec["kind"], spec.get("dims"), spec.get("bias", True)
    model = {"fc": FC, "nested": Nested}.get(kind, None)
    if kind == "modules":
        model = Modules(spec["modules"])
    else:
        model = sequential(dims, bias) if kind == "sequential" else model(dims, bias)
    if "state" in spec:
        model.load_state_dict(load_file(spec["state"]))
    return model.eval()


def outputs(model, x):
    with torch.no_grad():
        if isinstance(x, dict):  # a Modules base: one input per module, outputs as lists
            return model(x)
        return model(torch.tensor(x, dtype=torch.float32)).tolist()


def adapter_outputs(model, names, x):
    """Each adapter's outputs on x, unmerged and merged (then unmerged again)."""
    result = {}
    for name in names:
        model.set_adapter(name)
        unmerged = outputs(model, x)
        model.merge_adapter()
        merged = outputs(model, x)
        model.unmerge_adapter()
        result[name] = {"unmerged": unmerged, "merged": merged}
    return result


@contextlib.contextmanager
def captured():
    """Every Python warning and every peft/transformers log record raised inside."""
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    loggers = [logging.getLogger(n) for n in ("peft", "transformers", "")]
    for lg in loggers:
        lg.addHandler(handler)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield messages
        finally:
            messages.extend(str(w.message) for w in caught)
            for lg in loggers:
                lg.removeHandler(handler)


def train_like(model, seed, round_to=None):
    """Seeded non-zero values for every trainable parameter (LoRA factors, modules_to_save
    copies), as training would leave them; rounded through `round_to` when given."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if "lora_" in name or "modules_to_save" in name:
                v = torch.randn(p.shape, generator=g) * 0.3
                if round_to is not None:
                    v = v.to(DTYPES[round_to]).to(torch.float32)
                p.copy_(v)


def op_save_peft(req):
    base = build_base(req["base"])
    if req.get("save_base"):
        save_file({k: v.contiguous() for k, v in base.state_dict().items()}, req["save_base"])
    adapters = req["adapters"]
    model = None
    with captured() as messages:
        for i, a in enumerate(adapters):
            config = LoraConfig(**a["config"])
            if model is None:
                model = get_peft_model(base, config, adapter_name=a["name"])
            else:
                model.add_adapter(a["name"], config)
        for i, a in enumerate(adapters):
            model.set_adapter(a["name"])
            train_like(model, a.get("seed", i), req.get("dtype"))
        model.eval()
        model.save_pretrained(req["dir"], selected_adapters=[a["name"] for a in adapters])
    if req.get("dtype"):
        # Store the (already rounded) adapter weights in that dtype, as a half-precision run would.
        for a in adapters:
            d = req["dir"] if a["name"] == "default" else os.path.join(req["dir"], a["name"])
            f = os.path.join(d, "adapter_model.safetensors")
            with safe_open(f, "pt") as h:
                meta = h.metadata()
            save_file({k: v.to(DTYPES[req["dtype"]]) for k, v in load_file(f).items()}, f, metadata=meta)
    return {"outputs": adapter_outputs(model, [a["name"] for a in adapters], req["x"]), "warnings": messages}


def op_load_ours(req):
    base = build_base(req["base"])
    model = None
    with captured() as messages:
        for a in req["adapters"]:
            if model is None:
                model = PeftModel.from_pretrained(base, a["dir"], adapter_name=a["name"])
            else:
                model.load_adapter(a["dir"], adapter_name=a["name"])
        model.eval()
        result = adapter_outputs(model, [a["name"] for a in req["adapters"]], req["x"])
        config = model.peft_config[req["adapters"][0]["name"]]
        described = {
            "r": config.r,
            "lora_alpha": config.lora_alpha,
            "rank_pattern": dict(config.rank_pattern or {}),
            "alpha_pattern": dict(config.alpha_pattern or {}),
            "modules_to_save": sorted(config.modules_to_save or []),
            "ranks": {n: int(m.r[req["adapters"][0]["name"]]) for n, m in model.base_model.model.named_modules() if hasattr(m, "r") and isinstance(getattr(m, "r"), dict) and req["adapters"][0]["name"] in m.r},
        }
    base_out = outputs(build_base(req["base"]), req["x"])
    return {"outputs": result, "warnings": messages, "base": base_out, "config": described}


def op_round(req):
    t = torch.tensor(req["values"], dtype=torch.float32).to(DTYPES[req["dtype"]]).to(torch.float32)
    # JSON has no inf or nan: send those as the strings "inf", "-inf", "nan".
    return {"values": [v if math.isfinite(v) else str(v) for v in t.tolist()]}


def op_versions(_req):
    import safetensors

    return {"torch": torch.__version__, "peft": peft.__version__, "safetensors": safetensors.__version__}


OPS = {"save_peft": op_save_peft, "load_ours": op_load_ours, "round": op_round, "versions": op_versions}


def main():
    out = sys.stdout
    sys.stdout = sys.stderr  # anything printed by libraries goes to stderr, never into the protocol
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        try:
            reply = {"ok": True, **OPS[req["op"]](req)}
        except Exception as err:  # reported to the test, which fails with it
            reply = {"ok": False, "error": f"{type(err).__name__}: {err}", "trace": traceback.format_exc()}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
