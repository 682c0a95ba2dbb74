/*
** grow.c: growing arrays.  The engine keeps many arrays that only grow
** while one transaction, commit or listing lives (undo log, savepoint
** marks, resolved changes, deferred index entries, ...); they all grow the
** same way, by doubling.
*/
#include <stdlib.h>
#include <string.h>

#include "tierstore_int.h"

/* Array p of *pcap elements of size sz, grown (doubling, new elements
** zeroed) to hold at least want >= 1 of them.  NULL when out of memory, p
** then being left as it was. */
void *ts_grow(void *p, size_t *pcap, size_t sz, size_t want) {
  size_t cap = *pcap ? *pcap : 8;
  unsigned char *q;
  while (cap < want) {
    if (cap > ((size_t)-1 / 2) / sz) return NULL;
    cap *= 2;
  }
  if (cap == *pcap) return p;
  q = realloc(p, cap * sz);
  if (q == NULL) return NULL;
  memset(q + *pcap * sz, 0, (cap - *pcap) * sz);
  *pcap = cap;
  return q;
}
