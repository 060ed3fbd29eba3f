"""The compiled loop of :mod:`zoo.jsonscan` (imports numba: imported by it on first use)."""

import numba
import numpy as np

#: The most dimensions an array read may have.
MAX_DEPTH = 8
#: 10**0 .. 10**22, exact doubles.
POWERS = np.array([10.0 ** i for i in range(23)])


def _scan(buf, begin, end, out, shape, ints_only, to_float32):   # pragma: no cover
    """The elements of a JSON array, ``buf[begin:end]`` without its brackets, into
    ``out``; ``shape[0..depth]`` their shape. Returns ``(leaf depth or a code < 0, count
    of numbers)``; -4: ``out`` is too short. ``to_float32``: ``out`` is float32, and
    decimals of 16-18 significant digits are read too (see below)."""
    counts = np.zeros(MAX_DEPTH + 1, np.int64)
    room = len(out)
    scratch = np.empty(1, np.float64)
    bits = scratch.view(np.uint64)
    for d in range(MAX_DEPTH + 1):
        shape[d] = -1
    depth = 0
    leaf = -1
    n = 0
    expect = True           # a value next (else "," or "]")
    pos = begin
    while True:
        while pos < end and (buf[pos] == 32 or buf[pos] == 10 or buf[pos] == 13
                             or buf[pos] == 9):
            pos += 1
        if pos >= end:
            break
        c = buf[pos]
        if not expect:
            if c == 44:         # ,
                expect = True
                pos += 1
            elif c == 93:       # ]
                if depth == 0:
                    return -1, n
                if shape[depth] == -1:
                    shape[depth] = counts[depth]
                elif shape[depth] != counts[depth]:
                    return -1, n
                depth -= 1
                counts[depth] += 1
                pos += 1
            else:
                return -1, n
            continue
        if c == 91:             # [
            depth += 1
            if depth >= MAX_DEPTH:    # more than MAX_DEPTH dimensions
                return -1, n
            counts[depth] = 0
            pos += 1
            continue
        negative = c == 45      # -
        if negative:
            pos += 1
            if pos >= end:
                return -1, n
            c = buf[pos]
        if c < 48 or c > 57:    # not a number (a string, an object, "]" of [] or ",]")
            return -1, n
        if leaf == -1:
            leaf = depth
        elif depth != leaf:     # numbers beside arrays
            return -1, n
        if n >= room:           # more numbers than the caller's estimate made room for
            return -4, n
        mantissa = 0
        digits = 0              # significant digits in the mantissa
        if c == 48:             # 0: no digit may follow
            pos += 1
            if pos < end and 48 <= buf[pos] <= 57:
                return -1, n
        else:
            while pos < end and 48 <= buf[pos] <= 57:
                mantissa = mantissa * 10 + (buf[pos] - 48)
                digits += 1
                pos += 1
                if digits > 18:
                    return -2, n
        exponent = 0
        decimal = False
        if pos < end and buf[pos] == 46:        # .
            decimal = True
            pos += 1
            fraction = 0
            while pos < end and 48 <= buf[pos] <= 57:
                mantissa = mantissa * 10 + (buf[pos] - 48)
                if digits or mantissa:
                    digits += 1
                fraction += 1
                pos += 1
                if digits > 18:
                    return -2, n
            if fraction == 0:
                return -1, n
            exponent = -fraction
        if pos < end and (buf[pos] == 101 or buf[pos] == 69):   # e E
            decimal = True
            pos += 1
            minus = False
            if pos < end and (buf[pos] == 43 or buf[pos] == 45):
                minus = buf[pos] == 45
                pos += 1
            power = 0
            power_digits = 0
            while pos < end and 48 <= buf[pos] <= 57:
                if power < 100000:
                    power = power * 10 + (buf[pos] - 48)
                power_digits += 1
                pos += 1
            if power_digits == 0:
                return -1, n
            exponent += -power if minus else power
        if decimal:
            if ints_only:
                return -3, n
            if exponent < -22 or exponent > 22:
                return -2, n
            value = float(mantissa)
            if exponent < 0:
                value = value / POWERS[-exponent]
            else:
                value = value * POWERS[exponent]
            if mantissa > 9007199254740992:
                # Two roundings (the mantissa, then the division or product): ``value`` is
                # within ~2.5 ulps of the correctly rounded double, so both round to the
                # same float32 unless a float32 midpoint (low 29 bits 0x10000000) lies
                # within a few ulps -- or the value nears float32's largest.
                if not to_float32:
                    return -2, n
                scratch[0] = value
                low = np.int64(bits[0] & np.uint64(0x1FFFFFFF))
                if abs(low - 0x10000000) <= 8 or value > 1e38:
                    return -2, n
            out[n] = -value if negative else value
        elif negative and mantissa == 0 and not ints_only:
            out[n] = -0.0               # -0 as a float, as Python and simdjson read it
        else:
            out[n] = -mantissa if negative else mantissa
        n += 1
        counts[depth] += 1
        expect = False
    if expect or depth != 0:   # nothing, a trailing comma, or an unclosed array
        return -1, n
    shape[0] = counts[0]
    return leaf, n


try:
    scan = numba.njit(nogil=True, cache=True)(_scan)
except RuntimeError:    # no writable directory for numba's cache: compiled in each process
    scan = numba.njit(nogil=True)(_scan)
