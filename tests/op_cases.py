"""Per-op sweep cases shared by the compiler's oracle tests and the hardware's Verilator tests,
so both layers of the stack are checked on the same convolutions."""

#: k, stride, pad, weight bits, activation bits, per-channel scales, signed input, batchnorm
CONV_CASES = [
    (1, 1, 0, 4, 4, False, False, False),
    (3, 1, 1, 2, 2, False, False, False),
    (3, 2, 1, 4, 4, True, True, False),
    (5, 1, 2, 8, 8, True, False, True),
    (5, 2, 0, 3, 5, False, True, True),
    (2, 2, 0, 6, 3, True, False, False),
    (3, 1, 0, 7, 7, False, True, True),
    (4, 3, 2, 5, 6, True, True, False),
]
