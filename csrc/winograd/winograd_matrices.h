/*
 * winograd_matrices.h: the transforms of Winograd's minimal filtering F(m x m, 3 x 3)
 * (Lavin & Gray 2016), tile alpha = m + 2:
 *
 *     Y = AT [ (G g G^T) . (BT d B) ] AT^T      (. = elementwise; d: alpha x alpha input
 *                                               tile, g: 3 x 3 kernel, Y: m x m outputs)
 *
 * Interpolation points: F(2,3) 0, +-1, inf; F(4,3) 0, +-1, +-2, inf; F(6,3) 0, +-1, +-2,
 * +-1/2, inf. Each set is checked against the definition by tests/test_winograd.py's
 * matrix test (and by every correctness test). The row sums of |AT| and |BT| (3, 19, 67
 * and 2, 10, 15) drive the error bound (docs/architecture.md).
 */
#ifndef FASTCONV_WINOGRAD_MATRICES_H
#define FASTCONV_WINOGRAD_MATRICES_H

static const double FC_WINO2_AT[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
static const double FC_WINO2_G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
static const double FC_WINO2_BT[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};

static const double FC_WINO4_AT[4][6] = {
    {1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
static const double FC_WINO4_G[6][3] = {
    {1.0 / 4, 0, 0},           {-1.0 / 6, -1.0 / 6, -1.0 / 6}, {-1.0 / 6, 1.0 / 6, -1.0 / 6},
    {1.0 / 24, 1.0 / 12, 1.0 / 6}, {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0, 0, 1}};
static const double FC_WINO4_BT[6][6] = {
    {4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
    {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};

static const double FC_WINO6_AT[6][8] = {
    {1, 1, 1, 1, 1, 1, 1, 0},
    {0, 1, -1, 2, -2, 0.5, -0.5, 0},
    {0, 1, 1, 4, 4, 0.25, 0.25, 0},
    {0, 1, -1, 8, -8, 0.125, -0.125, 0},
    {0, 1, 1, 16, 16, 1.0 / 16, 1.0 / 16, 0},
    {0, 1, -1, 32, -32, 1.0 / 32, -1.0 / 32, 1}};
static const double FC_WINO6_G[8][3] = {
    {1, 0, 0},
    {-2.0 / 9, -2.0 / 9, -2.0 / 9},
    {-2.0 / 9, 2.0 / 9, -2.0 / 9},
    {1.0 / 90, 1.0 / 45, 2.0 / 45},
    {1.0 / 90, -1.0 / 45, 2.0 / 45},
    {32.0 / 45, 16.0 / 45, 8.0 / 45},
    {32.0 / 45, -16.0 / 45, 8.0 / 45},
    {0, 0, 1}};
static const double FC_WINO6_BT[8][8] = {
    {1, 0, -21.0 / 4, 0, 21.0 / 4, 0, -1, 0},
    {0, 1, 1, -17.0 / 4, -17.0 / 4, 1, 1, 0},
    {0, -1, 1, 17.0 / 4, -17.0 / 4, -1, 1, 0},
    {0, 0.5, 0.25, -2.5, -1.25, 2, 1, 0},
    {0, -0.5, 0.25, 2.5, -1.25, -2, 1, 0},
    {0, 2, 4, -2.5, -5, 0.5, 1, 0},
    {0, -2, 4, 2.5, -5, -0.5, 1, 0},
    {0, -1, 0, 21.0 / 4, 0, -21.0 / 4, 0, 1}};

#endif
