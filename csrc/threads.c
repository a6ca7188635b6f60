/* threads.c: fork safety of the OpenMP team (see threads.h). */
#include "threads.h"

#if !defined(_WIN32)
#include <pthread.h>
#define FC_HAVE_ATFORK 1
#endif

/* Flags that only ever go from 0 to 1: relaxed atomics where the compiler has them. */
#if defined(__GNUC__) || defined(__clang__)
#define LOAD(v) __atomic_load_n(&(v), __ATOMIC_RELAXED)
#define STORE1(v) __atomic_store_n(&(v), 1, __ATOMIC_RELAXED)
#else
#define LOAD(v) (v)
#define STORE1(v) ((v) = 1)
#endif

static volatile int team_started = 0; /* a region of more than one thread has run in this process */
static volatile int fork_serial = 0;  /* this process is a child forked after team_started */

#ifdef FC_HAVE_ATFORK
static void on_fork_child(void)
{
    /* Runs in the child right after fork(), before any other code: only async-signal-safe
       work here, and only our own flags. */
    if (LOAD(team_started))
        STORE1(fork_serial);
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void register_atfork(void) { (void)pthread_atfork(NULL, NULL, on_fork_child); }
#endif

void fc_threads_init(void)
{
#ifdef FC_HAVE_ATFORK
    (void)pthread_once(&atfork_once, register_atfork);
#endif
}

int fc_team_limit(int n)
{
    if (n <= 1)
        return 1;
    if (LOAD(fork_serial))
        return 1;
    fc_threads_init(); /* the handler must exist before the first team does */
    if (!LOAD(team_started))
        STORE1(team_started);
    return n;
}

int fc_fork_serial(void) { return LOAD(fork_serial); }
