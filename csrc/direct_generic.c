/* direct_generic.c: direct kernels in portable C, vectorised for the baseline ISA. */
#include "direct.h"

#define FC_ISA_SUFFIX generic
#define FC_OPS_NAME fc_direct_ops_generic
#include "direct_isa.inc"
