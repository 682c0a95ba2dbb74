/*
** router.c: the ephemeral rules (SPEC 5), which decide from the names
** alone whether a key lives in the primary or the ephemeral tier.
**
**   ephemeral = 'ldk, monitors/archive, cache'
**
** A rule is "pns" (a whole primary namespace, every secondary namespace
** included), "pns/sns" (one namespace pair) or "pns/sns/key" (one key);
** parts may be empty ("//scorer" is key scorer of the root namespace).
** The rule "ldk" stands for the LDK caches.  A router is one allocation
** holding its rules and a copy of the text their names point into; the
** rules are few, so routing is a linear scan that never allocates.
*/
#include "tierstore_int.h"

#include <stdlib.h>
#include <string.h>

/* What the rule "ldk" expands to: the caches an LDK node can rebuild. */
static const char ts_ldk_preset[] =
    "//network_graph,//scorer,//external_pathfinding_scores_cache";

typedef struct ts_rule ts_rule;
struct ts_rule {
  int npart;          /* 1: pns, 2: pns/sns, 3: pns/sns/key */
  ts_name part[3];    /* point into the router's copy or the preset */
};

struct ts_router {
  int nrule;
  ts_rule rule[];     /* nrule rules, spare room, then the rule text */
};

/* True for the ASCII white space trimmed around each rule. */
static int ts_rule_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Parse one trimmed rule z[0..n) into *r: split it at '/' into one to
** three parts; empty text or a fourth part is malformed. */
static int ts_rule_parse(const char *z, size_t n, ts_rule *r, ts_err *err) {
  size_t i;

  r->npart = 1;
  r->part[0].p = z;
  for (i = 0; i < n; i++) {
    if (z[i] != '/') continue;
    if (r->npart == 3) break;
    r->part[r->npart - 1].n = (size_t)(&z[i] - r->part[r->npart - 1].p);
    r->part[r->npart].p = &z[i + 1];
    r->npart++;
  }
  if (n == 0 || i < n) {
    return ts_err_set(err, TS_ERROR,
                      "ephemeral rule '%s' is malformed: expected pns, "
                      "pns/sns or pns/sns/key",
                      ts_err_show(z, n).z);
  }
  r->part[r->npart - 1].n = (size_t)(&z[n] - r->part[r->npart - 1].p);
  return TS_OK;
}

/* Walk the comma-separated list z, appending each trimmed rule to r (whose
** array has room for 3 per comma-separated item), expanding "ldk". */
static int ts_rules_walk(const char *z, ts_router *r, ts_err *err) {
  int rc = TS_OK;

  while (rc == TS_OK) {
    const char *comma = strchr(z, ',');
    const char *end = comma ? comma : z + strlen(z);

    while (z < end && ts_rule_space(*z)) z++;
    while (end > z && ts_rule_space(end[-1])) end--;
    if (end - z == 3 && memcmp(z, "ldk", 3) == 0) {
      rc = ts_rules_walk(ts_ldk_preset, r, err);
    } else {
      rc = ts_rule_parse(z, (size_t)(end - z), &r->rule[r->nrule], err);
      if (rc == TS_OK) r->nrule++;
    }
    if (comma == NULL) break;
    z = comma + 1;
  }
  return rc;
}

/* Parse the rule list (NULL, "" or only blanks = no rules) into a new
** router: one allocation sized for 3 rules per item ("ldk" is 3). */
int ts_router_new(const char *rules, ts_router **out, ts_err *err) {
  const char *z = rules ? rules : "";
  size_t ntext = strlen(z) + 1;
  size_t nmax = 3;
  const char *c;
  ts_router *r;
  char *copy;
  int rc = TS_OK;

  *out = NULL;
  for (c = strchr(z, ','); c != NULL; c = strchr(c + 1, ',')) nmax += 3;
  r = malloc(sizeof(*r) + nmax * sizeof(r->rule[0]) + ntext);
  if (r == NULL) {
    return ts_err_set(err, TS_NOMEM, "out of memory for the ephemeral rules");
  }
  r->nrule = 0;
  copy = (char *)&r->rule[nmax];
  memcpy(copy, z, ntext);
  while (ts_rule_space(*copy)) copy++;
  if (*copy != '\0') rc = ts_rules_walk(copy, r, err);
  if (rc != TS_OK) {
    free(r);
    return rc;
  }
  *out = r;
  return TS_OK;
}

/* Free a router (NULL is a no-op). */
void ts_router_free(ts_router *r) {
  free(r);
}

/* True if names a and b hold the same bytes (either may be {NULL, 0}). */
static int ts_name_eq(ts_name a, ts_name b) {
  return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

/* The tier of (pns, sns, key): ephemeral when any rule matches it, else
** primary.  Scans the rules; never allocates. */
ts_tier_id ts_router_route(const ts_router *r, ts_name pns, ts_name sns,
                           ts_name key) {
  int i;
  for (i = 0; i < r->nrule; i++) {
    const ts_rule *x = &r->rule[i];
    if (ts_name_eq(x->part[0], pns) &&
        (x->npart < 2 || ts_name_eq(x->part[1], sns)) &&
        (x->npart < 3 || ts_name_eq(x->part[2], key))) {
      return TS_TIER_EPHEMERAL;
    }
  }
  return TS_TIER_PRIMARY;
}

/* How the rules route the keys of namespace (pns, sns): a pns or pns/sns
** rule sends them all to memory; otherwise only pns/sns/key rules of this
** namespace can, key by key.  Lets a scan route a namespace once instead
** of every row. */
ts_ns_route ts_router_route_ns(const ts_router *r, ts_name pns, ts_name sns) {
  ts_ns_route verdict = TS_NS_PRIMARY;
  int i;
  for (i = 0; i < r->nrule; i++) {
    const ts_rule *x = &r->rule[i];
    if (!ts_name_eq(x->part[0], pns) || (x->npart >= 2 && !ts_name_eq(x->part[1], sns))) continue;
    if (x->npart < 3) return TS_NS_EPHEMERAL;
    verdict = TS_NS_PER_KEY;
  }
  return verdict;
}

/* True when the router has no rules: every key is primary. */
int ts_router_is_empty(const ts_router *r) {
  return r->nrule == 0;
}
