/* winograd_generic.c: the Winograd transforms in portable C, vectorised for the baseline ISA. */
#define FC_ISA_SUFFIX generic
#define FC_OPS_NAME fc_wino_ops_generic
#include "winograd_isa.inc"
