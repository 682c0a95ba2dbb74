/*
** worker.c: one long-lived thread that runs one function at a time.
**
** The coordinator writes the backup beside every primary write; starting
** a thread per write costs more than the handing over of a small write
** (tens of microseconds), so the backup's writes run on a worker that
** waits for its next function instead.
*/
#include "tierstore_int.h"

#include <pthread.h>
#include <stdlib.h>

struct ts_worker {
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  void (*fn)(void *);          /* the function to run; NULL: none */
  void *arg;
  int busy;                    /* fn handed over and not finished */
  int stop;
};

/* The worker's thread: run each function handed over, until stopped. */
static void *ts_worker_main(void *p) {
  ts_worker *w = p;
  pthread_mutex_lock(&w->mu);
  for (;;) {
    while (!w->fn && !w->stop) pthread_cond_wait(&w->cv, &w->mu);
    if (w->stop && !w->fn) break;
    void (*fn)(void *) = w->fn;
    void *arg = w->arg;
    pthread_mutex_unlock(&w->mu);
    fn(arg);
    pthread_mutex_lock(&w->mu);
    w->fn = NULL;
    w->busy = 0;
    pthread_cond_broadcast(&w->cv);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

ts_worker *ts_worker_new(void) {
  ts_worker *w = calloc(1, sizeof(*w));
  if (!w) return NULL;
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
  if (pthread_create(&w->thread, NULL, ts_worker_main, w) != 0) {
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
    return NULL;
  }
  return w;
}

void ts_worker_free(ts_worker *w) {
  if (!w) return;
  pthread_mutex_lock(&w->mu);
  w->stop = 1;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
  pthread_join(w->thread, NULL);
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->cv);
  free(w);
}

void ts_worker_run(ts_worker *w, void (*fn)(void *), void *arg) {
  pthread_mutex_lock(&w->mu);
  while (w->busy) pthread_cond_wait(&w->cv, &w->mu);
  w->fn = fn;
  w->arg = arg;
  w->busy = 1;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

void ts_worker_join(ts_worker *w) {
  pthread_mutex_lock(&w->mu);
  while (w->busy) pthread_cond_wait(&w->cv, &w->mu);
  pthread_mutex_unlock(&w->mu);
}
