"""Readable text for expressions, the tensor IR and the loop IR (what `source("tensor")`/`source("loops")` show)."""
from __future__ import annotations

from .expr import SYMBOLS, Binary, Call, Cast, Const, Expr, Select, Var

_PREC = {"or": 1, "xor": 2, "and": 3, "eq": 4, "ne": 4, "lt": 5, "le": 5, "gt": 5, "ge": 5, "shl": 6, "shr": 6,
         "add": 7, "sub": 7, "mul": 8, "div": 8, "floordiv": 8, "mod": 8}


def expr_str(e: Expr, parent: int = 0, names: "dict[int, str] | None" = None) -> str:
    """Text of an expression; `names` renames variables (the loop printer uses it to tell shadowed loops apart)."""
    if names:
        from .expr import transform
        return expr_str(transform(e, lambda n: Var(names[id(n)], n.dtype)
                                  if isinstance(n, Var) and id(n) in names else None), parent)
    from .loops import Load
    from .tensor import Reduce, TensorRead
    if isinstance(e, Const):
        if e.dtype.is_bool:
            return "True" if e.value else "False"
        text = repr(e.value)
        return text if e.dtype.name in ("int64", "float32") else f"{e.dtype}({text})"
    if isinstance(e, Var):
        return e.name
    if isinstance(e, Binary):
        if e.op in SYMBOLS:
            prec = _PREC[e.op]
            text = f"{expr_str(e.a, prec)} {SYMBOLS[e.op]} {expr_str(e.b, prec + 1)}"
            return f"({text})" if prec < parent else text
        return f"{e.op}({expr_str(e.a)}, {expr_str(e.b)})"
    if isinstance(e, Call):
        if e.name == "neg":
            return f"-{expr_str(e.args[0], 9)}"
        return f"{e.name}({', '.join(expr_str(a) for a in e.args)})"
    if isinstance(e, Cast):
        return f"{e.dtype}({expr_str(e.value)})"
    if isinstance(e, Select):
        return f"select({expr_str(e.cond)}, {expr_str(e.a)}, {expr_str(e.b)})"
    if isinstance(e, TensorRead):
        return f"{e.tensor.name}[{', '.join(expr_str(i) for i in e.indices)}]"
    if isinstance(e, Load):
        return f"{e.buffer.name}[{expr_str(e.index)}]"
    if isinstance(e, Reduce):
        axes = ", ".join(a.name for a in e.axes)
        src = ", ".join(expr_str(s) for s in e.sources)
        where = "" if isinstance(e.where, Const) and e.where.value else f", where={expr_str(e.where)}"
        pick = f"[{e.value_index}]" if len(e.sources) > 1 else ""
        return f"{e.combiner}({src}, axis=[{axes}]{where}){pick}"
    return f"<{type(e).__name__}>"


def tensor_ir_str(outputs) -> str:
    """Every op feeding `outputs`, inputs first, one definition per line."""
    from .structural import topo_ops
    from .tensor import ComputeOp, PlaceholderOp
    lines = []
    for op in topo_ops(outputs):
        t = op.outputs[0]
        if isinstance(op, PlaceholderOp):
            lines.append(f"{op.name} = placeholder([{', '.join(map(str, t.shape))}], {t.dtype})")
        elif isinstance(op, ComputeOp):
            axes = ", ".join(f"{iv.name}<{iv.extent}" for iv in op.axis)
            red = "".join(f"  reduce {iv.name}<{iv.extent}" for iv in op.reduce_axis)
            for i, b in enumerate(op.body):
                lines.append(f"{op.outputs[i].name}[{axes}] : {op.outputs[i].dtype} = {expr_str(b)}{red}")
    return "\n".join(lines) + "\n"


def stmt_str(s, indent: int = 0, names: "dict[int, str] | None" = None) -> str:
    from .loops import Allocate, For, IfThenElse, LetStmt, Seq, Store
    names = {} if names is None else names
    pad = "  " * indent

    def ex(e: Expr) -> str:
        return expr_str(e, 0, names)

    if isinstance(s, Seq):
        return "".join(stmt_str(x, indent, names) for x in s.stmts)
    if isinstance(s, For):
        tag = f" @{s.thread_tag}" if s.thread_tag else ""
        tag += "".join(f" [{k}={v!r}]" for k, v in s.annotations)
        kind = "" if s.kind == "serial" else f"{s.kind} "
        shown, k = s.var.name, 0
        taken = set(names.values())
        while shown in taken:
            k += 1
            shown = f"{s.var.name}_{k}"
        inner = dict(names)
        inner[id(s.var)] = shown
        return f"{pad}{kind}for {shown} in 0..{ex(s.extent)}{tag}:\n{stmt_str(s.body, indent + 1, inner)}"
    if isinstance(s, Store):
        return f"{pad}{s.buffer.name}[{ex(s.index)}] = {ex(s.value)}\n"
    if isinstance(s, Allocate):
        dims = ", ".join(map(str, s.buffer.shape))
        head = f"{pad}allocate {s.buffer.name}[{dims}] {s.buffer.dtype} in {s.buffer.scope}\n"
        return head + stmt_str(s.body, indent, names)
    if isinstance(s, IfThenElse):
        text = f"{pad}if {ex(s.cond)}:\n{stmt_str(s.then, indent + 1, names)}"
        if s.otherwise is not None:
            text += f"{pad}else:\n{stmt_str(s.otherwise, indent + 1, names)}"
        return text
    if isinstance(s, LetStmt):
        return f"{pad}let {s.var.name} = {ex(s.value)}\n{stmt_str(s.body, indent, names)}"
    return f"{pad}<{type(s).__name__}>\n"


def func_str(f) -> str:
    args = ", ".join(f"{b.name}: {b.dtype}[{', '.join(map(str, b.shape))}]" for b in f.args)
    return f"def {f.name}({args}):\n{stmt_str(f.body, 1)}"
