/*
 * threads.h: the one place that decides how many OpenMP threads a parallel region may use.
 *
 * Every `#pragma omp parallel num_threads(n)` in fastconv takes its n from fc_team_limit(),
 * which is where fork safety lives: GNU libgomp's thread pool does not survive fork(), so
 * a child forked after our team started would wait forever on threads that no longer
 * exist. A pthread_atfork handler marks such a child, and from then on every region in it
 * runs on the calling thread alone (results are bitwise the same: every kernel is
 * deterministic for any team size). A child forked before any team started, and every
 * process started by spawn or forkserver, keep their threads.
 */
#ifndef FASTCONV_THREADS_H
#define FASTCONV_THREADS_H

/* Register the at-fork handler (idempotent; called at import). */
void fc_threads_init(void);

/* The team size a region asked for n threads may use: n, or 1 in a forked child whose
   parent had started a team, or 1 for n < 1. Records that a team (n > 1) has started. */
int fc_team_limit(int n);

/* 1 in a forked child whose kernels run serially (see above), else 0. */
int fc_fork_serial(void);

#endif /* FASTCONV_THREADS_H */
