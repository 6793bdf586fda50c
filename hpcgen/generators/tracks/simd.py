"""LANES float64 lanes as one LLVM vector (<LANES x double>) for the numba kernel.

numba's compiler does not vectorise the kernel's loops over its lanes by itself (math.exp
and math.pow are library calls, and it cannot prove the work arrays apart), so the lanes are
written as explicit vector values: ``Vec`` with +, -, *, / (IEEE, the same bits as the scalar
operations lane by lane), sqrt, abs, min/max as Python's builtins, comparisons giving a
``Mask`` and ``select``. Loads and stores move a row of LANES float64 between a work array
(shape (rows, LANES), C order) and a vector. ``vexp`` and ``vpow`` are branch-free vector
versions of exp and pow: within 2 ulp of libm's (so not always its exact bits; see docs/tracks.md).
"""

from __future__ import annotations

import operator

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, overload, register_model

from hpcgen.generators.tracks.stepper import LOG2E, SQRT2, exp_core, log_core
from hpcgen.kernel_cache import njit

_F64 = ir.DoubleType()
_I64 = ir.IntType(64)
#: tracks per vector: eight float64 lanes, two AVX2 registers (one AVX-512), so every operation
#: is two independent halves the core overlaps (a lookup's node loads, a square root); same bits
#: as four lanes (the measurement: docs/tracks.md, "Eight lanes")
LANES = 8
assert LANES % 4 == 0 and LANES & (LANES - 1) == 0  # zpair transposes blocks of four, joins pairs
_V = ir.VectorType(_F64, LANES)
_IV = ir.VectorType(_I64, LANES)
_BV = ir.VectorType(ir.IntType(1), LANES)


class VecType(types.Type):
    """LANES float64 lanes."""

    def __init__(self) -> None:
        super().__init__(name="Vec")


class MaskType(types.Type):
    """LANES booleans (a comparison of two Vec)."""

    def __init__(self) -> None:
        super().__init__(name="Mask")


vec = VecType()
maskv = MaskType()


@register_model(VecType)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _V)


@register_model(MaskType)
class _MaskModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _IV)  # 0 / -1 per lane (i1 vectors do not sit in memory)


def _splat(builder, x):
    v = ir.Constant(_V, ir.Undefined)
    for i in range(LANES):
        v = builder.insert_element(v, x, ir.Constant(ir.IntType(32), i))
    return v


def _as_vec(context, builder, ty, val):
    """A Vec argument as is; a scalar one cast to float64 and repeated in all lanes."""
    if isinstance(ty, VecType):
        return val
    return _splat(builder, context.cast(builder, val, ty, types.float64))


def _row_pointer(context, builder, aryty, ary, row):
    """Address of ary[row, 0] as a <LANES x double>* (row of a C-ordered (rows, LANES) float64
    array)."""
    arr = context.make_array(aryty)(context, builder, ary)
    zero = ir.Constant(_I64, 0)
    ptr = cgutils.get_item_pointer(context, builder, aryty, arr, [row, zero], wraparound=False)
    return builder.bitcast(ptr, _V.as_pointer())


# --- construction, loads, stores, lanes ---------------------------------------------------------


@intrinsic
def splat(typingctx, x):
    """x in all lanes."""
    sig = vec(x)

    def codegen(context, builder, signature, args):
        return _as_vec(context, builder, signature.args[0], args[0])

    return sig, codegen


@intrinsic
def vload(typingctx, ary, row):
    """ary[row, :] as a Vec (ary: float64, shape (rows, LANES), C order)."""
    sig = vec(ary, types.intp)

    def codegen(context, builder, signature, args):
        ptr = _row_pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.load(ptr, align=8)

    return sig, codegen


@intrinsic
def vstore(typingctx, ary, row, v):
    """ary[row, :] = v."""
    sig = types.void(ary, types.intp, vec)

    def codegen(context, builder, signature, args):
        ptr = _row_pointer(context, builder, signature.args[0], args[0], args[1])
        builder.store(args[2], ptr, align=8)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def mload(typingctx, ary, row):
    """ary[row, :] != 0 as a Mask (ary: int64, shape (rows, LANES), C order)."""
    sig = maskv(ary, types.intp)

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        zero = ir.Constant(_I64, 0)
        idx = [args[1], zero]
        ptr = cgutils.get_item_pointer(context, builder, signature.args[0], arr, idx, False)
        v = builder.load(builder.bitcast(ptr, _IV.as_pointer()), align=8)
        ne = builder.icmp_signed("!=", v, ir.Constant(_IV, [0] * LANES))
        return builder.sext(ne, _IV)

    return sig, codegen


@intrinsic
def select(typingctx, m, a, b):
    """a where m, else b, lane by lane."""
    sig = vec(maskv, a, b)

    def codegen(context, builder, signature, args):
        _, ta, tb = signature.args
        cond = builder.trunc(args[0], _BV)
        va = _as_vec(context, builder, ta, args[1])
        vb = _as_vec(context, builder, tb, args[2])
        return builder.select(cond, va, vb)

    return sig, codegen


# --- arithmetic ---------------------------------------------------------------------------------


def _lanewise(restype, apply):
    """An intrinsic (a, b) -> apply(builder, va, vb) of type restype, a and b each a Vec or a
    scalar (repeated in all lanes)."""

    @intrinsic
    def op(typingctx, a, b):
        sig = restype(a, b)

        def codegen(context, builder, signature, args):
            ta, tb = signature.args
            va = _as_vec(context, builder, ta, args[0])
            vb = _as_vec(context, builder, tb, args[1])
            return apply(builder, va, vb)

        return sig, codegen

    return op


def _binary(name):
    return _lanewise(vec, lambda builder, va, vb: getattr(builder, name)(va, vb))


_vadd = _binary("fadd")
_vsub = _binary("fsub")
_vmul = _binary("fmul")
_vdiv = _binary("fdiv")


def _is_operand_pair(a, b):
    vec = isinstance(a, VecType) or isinstance(b, VecType)
    ok = all(isinstance(t, (VecType, types.Float, types.Integer)) for t in (a, b))
    return vec and ok


for _op, _fn in (
    (operator.add, _vadd),
    (operator.sub, _vsub),
    (operator.mul, _vmul),
    (operator.truediv, _vdiv),
):

    def _register(op=_op, fn=_fn):
        @overload(op, inline="always")
        def _ov(a, b):
            if _is_operand_pair(a, b):
                return lambda a, b: fn(a, b)

    _register()


def _unary_intrinsic(llvm_name):
    @intrinsic
    def op(typingctx, a):
        sig = vec(vec)

        def codegen(context, builder, signature, args):
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(_V, [_V]), llvm_name
            )
            return builder.call(fn, args)

        return sig, codegen

    return op


vsqrt = _unary_intrinsic(f"llvm.sqrt.v{LANES}f64")


@overload(np.sqrt, inline="always")
def _np_sqrt(a):
    """np.sqrt of a Vec is vsqrt: functions written for numpy arrays (stepper.slope_derivatives)
    compile for vectors unchanged."""
    if isinstance(a, VecType):
        return lambda a: vsqrt(a)


vabs = _unary_intrinsic(f"llvm.fabs.v{LANES}f64")
vrint = _unary_intrinsic(f"llvm.rint.v{LANES}f64")  # round half to even (the default rounding mode)
vtrunc = _unary_intrinsic(f"llvm.trunc.v{LANES}f64")  # toward zero (Python's int() of a float)


def _compare(pred):
    return _lanewise(
        maskv, lambda builder, va, vb: builder.sext(builder.fcmp_ordered(pred, va, vb), _IV)
    )


vgt = _compare(">")
vge = _compare(">=")
vlt = _compare("<")
vle = _compare("<=")
veq = _compare("==")


@intrinsic
def visnan(typingctx, a):
    """Lanes that hold NaN."""
    sig = maskv(vec)

    def codegen(context, builder, signature, args):
        return builder.sext(builder.fcmp_unordered("uno", args[0], args[0]), _IV)

    return sig, codegen


def _mask_logic(name):
    @intrinsic
    def op(typingctx, a, b):
        sig = maskv(maskv, maskv)

        def codegen(context, builder, signature, args):
            return getattr(builder, name)(args[0], args[1])

        return sig, codegen

    return op


mor = _mask_logic("or_")  # lane-wise or of two masks
mand = _mask_logic("and_")  # lane-wise and


def _pick(pred):
    """Python's max (pred ">") or min ("<") lane by lane: b if b pred a else a (the builtins'
    result for NaN and -0 too)."""
    return _lanewise(
        vec, lambda builder, va, vb: builder.select(builder.fcmp_ordered(pred, vb, va), vb, va)
    )


vmax = _pick(">")
vmin = _pick("<")


@njit(cache=True, _nrt=False, inline="always")
def vminimum(a, b):
    """numpy's minimum lane by lane: NaN where either is NaN (stepper.plane_distance)."""
    r = select(mor(vlt(b, a), visnan(b)), b, a)
    return select(visnan(a), a, r)


@intrinsic
def _pow2i(typingctx, k):
    """2.0**k for integral k in [-1022, 1023] (built from the exponent bits). k + 1.5 * 2**52
    holds k in its low mantissa bits (two's complement): AVX2 has no vector float64 -> int64
    conversion, and this costs one add instead of a scalar one per lane."""
    sig = vec(vec)

    def codegen(context, builder, signature, args):
        shifted = builder.fadd(args[0], ir.Constant(_V, [6755399441055744.0] * LANES))
        ki = builder.bitcast(shifted, _IV)
        biased = builder.add(ki, ir.Constant(_IV, [1023] * LANES))
        bits = builder.shl(biased, ir.Constant(_IV, [52] * LANES))
        return builder.bitcast(bits, _V)

    return sig, codegen


@intrinsic
def _split(typingctx, x):
    """(m, e) with x = m * 2**e, m in [1, 2), for normal positive x (exponent bits taken apart)."""
    sig = types.UniTuple(vec, 2)(vec)

    def codegen(context, builder, signature, args):
        bits = builder.bitcast(args[0], _IV)
        biased = builder.lshr(bits, ir.Constant(_IV, [52] * LANES))
        e = builder.sub(biased, ir.Constant(_IV, [1023] * LANES))
        low = builder.and_(bits, ir.Constant(_IV, [(1 << 52) - 1] * LANES))
        m = builder.bitcast(builder.or_(low, ir.Constant(_IV, [1023 << 52] * LANES)), _V)
        return context.make_tuple(builder, signature.return_type, [m, builder.sitofp(e, _V)])

    return sig, codegen


# the series themselves are stepper's, compiled for vectors: the same operations by construction
_exp_core = njit(cache=True, _nrt=False, inline="always")(exp_core)
_log_core = njit(cache=True, _nrt=False, inline="always")(log_core)


@njit(cache=True, _nrt=False, inline="always")
def vexp(x):
    """exp(x), lane by lane: stepper.exp_series, operation for operation (within 2 ulp of libm's
    exp; 0 below -708.39, where exp leaves the normal numbers)."""
    xc = vmin(vmax(x, -708.0), 709.0)
    k = vrint(xc * LOG2E)
    p = _exp_core(xc, k)
    y = p * _pow2i(k)
    return select(vlt(x, -708.3964185322641), 0.0, select(vgt(x, 709.782712893384), np.inf, y))


@njit(cache=True, _nrt=False, inline="always")
def vlog(x):
    """log(x) for positive normal x, lane by lane: stepper.log_series, operation for operation."""
    m, e = _split(x)
    big = vgt(m, SQRT2)
    return _log_core(select(big, m * 0.5, m), select(big, e + 1.0, e))


@njit(cache=True, _nrt=False, inline="always")
def vpow(x, p):
    """x**p, lane by lane: stepper.step_power (x clamped to [1e-300, 1e300], exp(p log x))."""
    return vexp(p * vlog(vmin(vmax(x, 1e-300), 1e300)))


# --- gathers (one load per lane: AVX2's gather instructions are no faster on AMD) --------------


def _lane_indices(builder, idx):
    """A Vec of whole numbers in [0, 2**51) as <LANES x i64>: idx + 1.5 * 2**52 holds each in its
    low mantissa bits (one vector add and subtract instead of a scalar conversion per lane)."""
    shifted = builder.fadd(idx, ir.Constant(_V, [6755399441055744.0] * LANES))
    bits = builder.bitcast(shifted, _IV)
    return builder.sub(bits, ir.Constant(_IV, [0x4338000000000000] * LANES))


@intrinsic
def gather(typingctx, ary, idx):
    """(ary[idx[0]], ..., ary[idx[LANES - 1]]) as float64 (1-d array of any number type; idx
    holds whole numbers >= 0, as float64: exact below 2**53)."""
    sig = vec(ary, vec)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        data = context.make_array(aryty)(context, builder, args[0]).data
        dtype = aryty.dtype
        out = ir.Constant(_V, ir.Undefined)
        ivec = _lane_indices(builder, args[1])
        for ln in range(LANES):
            pos = ir.Constant(ir.IntType(32), ln)
            i = builder.extract_element(ivec, pos)
            v = builder.load(builder.gep(data, [i]))
            out = builder.insert_element(out, context.cast(builder, v, dtype, types.float64), pos)
        return out

    return sig, codegen


@intrinsic
def many(typingctx, m):
    """Whether any lane of the mask is set."""
    sig = types.boolean(maskv)

    def codegen(context, builder, signature, args):
        bits = builder.trunc(args[0], _BV)
        packed = builder.bitcast(bits, ir.IntType(LANES))
        return builder.icmp_unsigned("!=", packed, ir.Constant(ir.IntType(LANES), 0))

    return sig, codegen


@intrinsic
def mnot(typingctx, m):
    """Lane-wise not."""
    sig = maskv(maskv)

    def codegen(context, builder, signature, args):
        return builder.not_(args[0])

    return sig, codegen


@intrinsic
def zpair(typingctx, ary, idx):
    """Six consecutive float32 from ary[idx[l]] on, for each lane l, as six Vec (float64): a
    map node pair (Bx, By, Bz at k, then at k + 1). Two loads per lane and a transpose instead of
    six single-element gathers."""
    sig = types.UniTuple(vec, 6)(ary, vec)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        data = context.make_array(aryty)(context, builder, args[0]).data
        f32 = ir.FloatType()
        lo, hi = [], []
        ivec = _lane_indices(builder, args[1])
        for ln in range(LANES):
            i = builder.extract_element(ivec, ir.Constant(ir.IntType(32), ln))
            ptr = builder.gep(data, [i])
            lo.append(
                builder.load(builder.bitcast(ptr, ir.VectorType(f32, 4).as_pointer()), align=4)
            )
            ptr2 = builder.gep(data, [builder.add(i, ir.Constant(_I64, 4))])
            hi.append(
                builder.load(builder.bitcast(ptr2, ir.VectorType(f32, 2).as_pointer()), align=4)
            )

        def shuf(x, y, m):
            mask = ir.Constant(ir.VectorType(ir.IntType(32), len(m)), m)
            return builder.shuffle_vector(x, y, mask)

        # per block of four lanes, a 4 x 4 transpose in two rounds of shuffles (lo), the 2 x 4
        # part alike (hi): six rows of four float32
        blocks = []
        for b in range(0, LANES, 4):
            t0 = shuf(lo[b], lo[b + 1], [0, 4, 1, 5])
            t1 = shuf(lo[b], lo[b + 1], [2, 6, 3, 7])
            t2 = shuf(lo[b + 2], lo[b + 3], [0, 4, 1, 5])
            t3 = shuf(lo[b + 2], lo[b + 3], [2, 6, 3, 7])
            h0 = shuf(hi[b], hi[b + 1], [0, 2, 1, 3])
            h1 = shuf(hi[b + 2], hi[b + 3], [0, 2, 1, 3])
            blocks.append(
                [
                    shuf(t0, t2, [0, 1, 4, 5]),
                    shuf(t0, t2, [2, 3, 6, 7]),
                    shuf(t1, t3, [0, 1, 4, 5]),
                    shuf(t1, t3, [2, 3, 6, 7]),
                    shuf(h0, h1, [0, 1, 4, 5]),
                    shuf(h0, h1, [2, 3, 6, 7]),
                ]
            )
        outs = []
        for r in range(6):
            parts = [blk[r] for blk in blocks]
            while len(parts) > 1:  # the blocks' rows joined into one row of LANES
                n = 2 * parts[0].type.count
                parts = [
                    shuf(parts[k], parts[k + 1], list(range(n))) for k in range(0, len(parts), 2)
                ]
            outs.append(builder.fpext(parts[0], _V))
        return context.make_tuple(builder, signature.return_type, outs)

    return sig, codegen
