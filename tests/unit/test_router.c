/*
** test_router.c: unit tests of router.c, the ephemeral rules: parsing,
** the ldk preset, empty parts, blanks, errors, and routing by
** pns / pns/sns / pns/sns/key rules, key by key and by namespace.
*/
#include "tierstore_int.h"
#include "check.h"

/* A name over a C string. */
static ts_name N(const char *z) {
  ts_name nm = {z, strlen(z)};
  return nm;
}

/* The empty name as callers may pass it: no bytes at all. */
static const ts_name EMPTY = {NULL, 0};

/* Route (pns, sns, key) given as C strings. */
static ts_tier_id route(const ts_router *r, const char *p, const char *s,
                        const char *k) {
  return ts_router_route(r, N(p), N(s), N(k));
}

/* Parse rules that must be valid; returns the router (NULL on failure,
** after counting a failed check). */
static ts_router *parse_ok(const char *rules) {
  ts_router *r = NULL;
  ts_err err;
  memset(&err, 0, sizeof(err));
  CHECK_EQ_INT(ts_router_new(rules, &r, &err), TS_OK);
  CHECK(r != NULL);
  if (r == NULL) fprintf(stderr, "  rules '%s': %s\n", rules, err.msg);
  return r;
}

/* Parse rules that must be rejected with TS_ERROR and a message holding
** want; *out must stay NULL. */
static void parse_fail(const char *rules, const char *want) {
  ts_router *r = (ts_router *)&r; /* any non-NULL value */
  ts_err err;
  memset(&err, 0, sizeof(err));
  CHECK_EQ_INT(ts_router_new(rules, &r, &err), TS_ERROR);
  CHECK(r == NULL);
  CHECK_EQ_INT(err.code, TS_ERROR);
  CHECK_STR_HAS(err.msg, want);
}

/* NULL, "" and blanks mean no rules: every key is primary. */
static void test_empty(void) {
  const char *none[] = {NULL, "", " ", " \t\r\n "};
  size_t i;
  for (i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
    ts_router *r = parse_ok(none[i]);
    if (r == NULL) continue;
    CHECK(ts_router_is_empty(r));
    CHECK_EQ_INT(route(r, "", "", "scorer"), TS_TIER_PRIMARY);
    CHECK_EQ_INT(ts_router_route(r, EMPTY, EMPTY, EMPTY), TS_TIER_PRIMARY);
    CHECK_EQ_INT(route(r, "a", "b", "c"), TS_TIER_PRIMARY);
    ts_router_free(r);
  }
  ts_router_free(NULL);
}

/* The ldk preset: the three LDK caches in the root namespace, nothing else;
** it combines with other rules and tolerates spaces. */
static void test_ldk(void) {
  const char *forms[] = {"ldk", "  ldk  ", "\tldk\n", "ldk,ldk",
                         "x/y, ldk ,z"};
  size_t i;
  for (i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
    ts_router *r = parse_ok(forms[i]);
    if (r == NULL) continue;
    CHECK(!ts_router_is_empty(r));
    CHECK_EQ_INT(route(r, "", "", "network_graph"), TS_TIER_EPHEMERAL);
    CHECK_EQ_INT(route(r, "", "", "scorer"), TS_TIER_EPHEMERAL);
    CHECK_EQ_INT(route(r, "", "", "external_pathfinding_scores_cache"),
                 TS_TIER_EPHEMERAL);
    CHECK_EQ_INT(ts_router_route(r, EMPTY, EMPTY, N("scorer")),
                 TS_TIER_EPHEMERAL);
    CHECK_EQ_INT(route(r, "", "", "manager"), TS_TIER_PRIMARY);
    CHECK_EQ_INT(route(r, "", "", "score"), TS_TIER_PRIMARY);
    CHECK_EQ_INT(route(r, "", "", "scorers"), TS_TIER_PRIMARY);
    CHECK_EQ_INT(route(r, "", "", "network_graph_"), TS_TIER_PRIMARY);
    CHECK_EQ_INT(route(r, "monitors", "", "scorer"), TS_TIER_PRIMARY);
    CHECK_EQ_INT(route(r, "ldk", "", "scorer"), TS_TIER_PRIMARY);
    CHECK_EQ_INT(route(r, "ldk", "", "k"), TS_TIER_PRIMARY);
    ts_router_free(r);
  }
  /* "ldk" is a preset only as a whole rule */
  {
    ts_router *r = parse_ok("ldk/x,xldk,ldkx");
    if (r != NULL) {
      CHECK_EQ_INT(route(r, "", "", "scorer"), TS_TIER_PRIMARY);
      CHECK_EQ_INT(route(r, "ldk", "x", "k"), TS_TIER_EPHEMERAL);
      CHECK_EQ_INT(route(r, "xldk", "", "k"), TS_TIER_EPHEMERAL);
      CHECK_EQ_INT(route(r, "ldkx", "a", "k"), TS_TIER_EPHEMERAL);
      ts_router_free(r);
    }
  }
}

/* A pns rule takes the whole primary namespace, all its secondaries. */
static void test_pns_rule(void) {
  ts_router *r = parse_ok("cache");
  if (r == NULL) return;
  CHECK_EQ_INT(route(r, "cache", "", "k"), TS_TIER_EPHEMERAL);
  CHECK_EQ_INT(route(r, "cache", "a", "k"), TS_TIER_EPHEMERAL);
  CHECK_EQ_INT(route(r, "cache", "bb", "zz"), TS_TIER_EPHEMERAL);
  CHECK_EQ_INT(route(r, "cach", "", "k"), TS_TIER_PRIMARY);
  CHECK_EQ_INT(route(r, "caches", "", "k"), TS_TIER_PRIMARY);
  CHECK_EQ_INT(route(r, "Cache", "", "k"), TS_TIER_PRIMARY);
  CHECK_EQ_INT(route(r, "", "", "cache"), TS_TIER_PRIMARY);
  CHECK_EQ_INT(route(r, "x", "cache", "k"), TS_TIER_PRIMARY);
  ts_router_free(r);
}

/* A pns/sns rule takes exactly that namespace pair. */
static void test_pair_rule(void) {
  ts_router *r = parse_ok("mon/archive");
  if (r == NULL) return;
  CHECK_EQ_INT(route(r, "mon", "archive", "k1"), TS_TIER_EPHEMERAL);
  CHECK_EQ_INT(route(r, "mon", "archive", "k2"), TS_TIER_EPHEMERAL);
  CHECK_EQ_INT(route(r, "mon", "", "k1"), TS_TIER_PRIMARY);
  CHECK_EQ_INT(route(r, "mon", "archives", "k1"), TS_TIER_PRIMARY);
  CHECK_EQ_INT(route(r, "mon", "archiv", "k1"), TS_TIER_PRIMARY);
  CHECK_EQ_INT(route(r, "mo", "archive", "k1"), TS_TIER_PRIMARY);
  CHECK_EQ_INT(route(r, "monarchive", "", "k1"), TS_TIER_PRIMARY);
  CHECK_EQ_INT(route(r, "", "", "archive"), TS_TIER_PRIMARY);
  ts_router_free(r);
}

/* A pns/sns/key rule takes exactly one key. */
static void test_key_rule(void) {
  ts_router *r = parse_ok("a/b/c");
  if (r == NULL) return;
  CHECK_EQ_INT(route(r, "a", "b", "c"), TS_TIER_EPHEMERAL);
  CHECK_EQ_INT(route(r, "a", "b", "cd"), TS_TIER_PRIMARY);
  CHECK_EQ_INT(route(r, "a", "b", "d"), TS_TIER_PRIMARY);
  CHECK_EQ_INT(ts_router_route(r, N("a"), N("b"), EMPTY), TS_TIER_PRIMARY);
  CHECK_EQ_INT(route(r, "a", "", "c"), TS_TIER_PRIMARY);
  CHECK_EQ_INT(route(r, "", "", "c"), TS_TIER_PRIMARY);
  CHECK_EQ_INT(route(r, "a", "bc", ""), TS_TIER_PRIMARY);
  ts_router_free(r);
}

/* Empty parts: each is the empty name, not a wildcard. */
static void test_empty_parts(void) {
  ts_router *r = parse_ok("//scorer");
  if (r != NULL) {
    CHECK_EQ_INT(route(r, "", "", "scorer"), TS_TIER_EPHEMERAL);
    CHECK_EQ_INT(route(r, "x", "", "scorer"), TS_TIER_PRIMARY);
    CHECK_EQ_INT(route(r, "", "x", "scorer"), TS_TIER_PRIMARY);
    ts_router_free(r);
  }
  r = parse_ok("/x");                 /* pns '' sns 'x': valid syntax */
  if (r != NULL) {
    CHECK_EQ_INT(route(r, "", "x", "k"), TS_TIER_EPHEMERAL);
    CHECK_EQ_INT(route(r, "", "", "k"), TS_TIER_PRIMARY);
    CHECK_EQ_INT(route(r, "x", "", "k"), TS_TIER_PRIMARY);
    ts_router_free(r);
  }
  r = parse_ok("a/");                 /* pns 'a' sns '' only */
  if (r != NULL) {
    CHECK_EQ_INT(route(r, "a", "", "k"), TS_TIER_EPHEMERAL);
    CHECK_EQ_INT(route(r, "a", "s", "k"), TS_TIER_PRIMARY);
    ts_router_free(r);
  }
  r = parse_ok("/");                  /* the root namespace pair */
  if (r != NULL) {
    CHECK_EQ_INT(route(r, "", "", "anything"), TS_TIER_EPHEMERAL);
    CHECK_EQ_INT(ts_router_route(r, EMPTY, EMPTY, N("k")), TS_TIER_EPHEMERAL);
    CHECK_EQ_INT(route(r, "a", "", "k"), TS_TIER_PRIMARY);
    ts_router_free(r);
  }
  r = parse_ok("a//k");               /* key k of pns 'a', sns '' */
  if (r != NULL) {
    CHECK_EQ_INT(route(r, "a", "", "k"), TS_TIER_EPHEMERAL);
    CHECK_EQ_INT(route(r, "a", "s", "k"), TS_TIER_PRIMARY);
    ts_router_free(r);
  }
  r = parse_ok("//");                 /* the empty key: never stored */
  if (r != NULL) {
    CHECK(!ts_router_is_empty(r));
    CHECK_EQ_INT(route(r, "", "", "k"), TS_TIER_PRIMARY);
    CHECK_EQ_INT(ts_router_route(r, EMPTY, EMPTY, EMPTY), TS_TIER_EPHEMERAL);
    ts_router_free(r);
  }
}

/* Spaces around a rule are trimmed; spaces inside it are part of names. */
static void test_spaces(void) {
  ts_router *r = parse_ok("  a/b , \tc/d/e\t,f  ");
  if (r != NULL) {
    CHECK_EQ_INT(route(r, "a", "b", "k"), TS_TIER_EPHEMERAL);
    CHECK_EQ_INT(route(r, "c", "d", "e"), TS_TIER_EPHEMERAL);
    CHECK_EQ_INT(route(r, "f", "x", "k"), TS_TIER_EPHEMERAL);
    CHECK_EQ_INT(route(r, "a ", "b", "k"), TS_TIER_PRIMARY);
    CHECK_EQ_INT(route(r, " a", "b", "k"), TS_TIER_PRIMARY);
    ts_router_free(r);
  }
  r = parse_ok(" a b / c ");          /* inner spaces stay (names=any) */
  if (r != NULL) {
    CHECK_EQ_INT(route(r, "a b ", " c", "k"), TS_TIER_EPHEMERAL);
    CHECK_EQ_INT(route(r, "a b", "c", "k"), TS_TIER_PRIMARY);
    ts_router_free(r);
  }
}

/* Several rules of every kind: a key is ephemeral iff one matches. */
static void test_mixed(void) {
  ts_router *r = parse_ok("ldk,cache,mon/archive,a/b/c,/x");
  char many[4096];
  size_t o = 0;
  int i;

  if (r != NULL) {
    CHECK_EQ_INT(route(r, "", "", "scorer"), TS_TIER_EPHEMERAL);
    CHECK_EQ_INT(route(r, "cache", "q", "k"), TS_TIER_EPHEMERAL);
    CHECK_EQ_INT(route(r, "mon", "archive", "k"), TS_TIER_EPHEMERAL);
    CHECK_EQ_INT(route(r, "a", "b", "c"), TS_TIER_EPHEMERAL);
    CHECK_EQ_INT(route(r, "", "x", "c"), TS_TIER_EPHEMERAL);
    CHECK_EQ_INT(route(r, "mon", "", "k"), TS_TIER_PRIMARY);
    CHECK_EQ_INT(route(r, "a", "b", "d"), TS_TIER_PRIMARY);
    CHECK_EQ_INT(route(r, "", "", "k"), TS_TIER_PRIMARY);
    ts_router_free(r);
  }

  /* a long list, presets interleaved: every rule holds */
  for (i = 0; i < 200; i++) {
    o += (size_t)snprintf(many + o, sizeof(many) - o, "%sp%d/s%d%s",
                          i ? "," : "", i, i, i % 50 == 0 ? ",ldk" : "");
  }
  r = parse_ok(many);
  if (r != NULL) {
    char p[16], s[16];
    for (i = 0; i < 200; i++) {
      snprintf(p, sizeof(p), "p%d", i);
      snprintf(s, sizeof(s), "s%d", i);
      CHECK_EQ_INT(route(r, p, s, "k"), TS_TIER_EPHEMERAL);
      CHECK_EQ_INT(route(r, p, "s", "k"), TS_TIER_PRIMARY);
    }
    CHECK_EQ_INT(route(r, "", "", "scorer"), TS_TIER_EPHEMERAL);
    CHECK_EQ_INT(route(r, "p200", "s200", "k"), TS_TIER_PRIMARY);
    ts_router_free(r);
  }
}

/* A namespace's verdict agrees with routing each of its keys: whole
** namespaces by pns and pns/sns rules, key rules key by key. */
static void test_namespace_route(void) {
  ts_router *r = parse_ok("ldk,cache,mon/archive,a/b/c,/x");
  if (r == NULL) return;
  CHECK_EQ_INT(ts_router_route_ns(r, N("cache"), N("q")), TS_NS_EPHEMERAL);
  CHECK_EQ_INT(ts_router_route_ns(r, N("mon"), N("archive")), TS_NS_EPHEMERAL);
  CHECK_EQ_INT(ts_router_route_ns(r, N(""), N("x")), TS_NS_EPHEMERAL);
  CHECK_EQ_INT(ts_router_route_ns(r, N("a"), N("b")), TS_NS_PER_KEY);
  CHECK_EQ_INT(ts_router_route_ns(r, EMPTY, EMPTY), TS_NS_PER_KEY);   /* //scorer ... */
  CHECK_EQ_INT(ts_router_route_ns(r, N("mon"), EMPTY), TS_NS_PRIMARY);
  CHECK_EQ_INT(ts_router_route_ns(r, N("a"), N("c")), TS_NS_PRIMARY);
  CHECK_EQ_INT(ts_router_route_ns(r, N("other"), N("b")), TS_NS_PRIMARY);
  ts_router_free(r);
  r = parse_ok("a/b/c,a");   /* a whole pns wins over a key rule in it */
  if (r == NULL) return;
  CHECK_EQ_INT(ts_router_route_ns(r, N("a"), N("b")), TS_NS_EPHEMERAL);
  ts_router_free(r);
  r = parse_ok(NULL);
  if (r == NULL) return;
  CHECK_EQ_INT(ts_router_route_ns(r, N("a"), N("b")), TS_NS_PRIMARY);
  ts_router_free(r);
}

/* Malformed lists: empty rules, more than two '/'. */
static void test_errors(void) {
  static const char *tail =
      "' is malformed: expected pns, pns/sns or pns/sns/key";
  char want[200];

  parse_fail("x/y/z/w",
             "tierstore: ephemeral rule 'x/y/z/w' is malformed: expected "
             "pns, pns/sns or pns/sns/key");
  parse_fail("///", "rule '///' is malformed");
  parse_fail("a/b/c/", "rule 'a/b/c/' is malformed");
  parse_fail("ok, a/b/c/d/e ,ok2", "rule 'a/b/c/d/e' is malformed");
  snprintf(want, sizeof(want), "tierstore: ephemeral rule '%s", tail);
  parse_fail("a,,b", want);
  parse_fail("a,", want);
  parse_fail(",a", want);
  parse_fail(",", want);
  parse_fail("a, ,b", want);
  parse_fail("ldk,", want);
  parse_fail("  a , \t", want);
  /* a bad rule is shown printable and cut short */
  parse_fail("a/b/c/\x01\xff'", "rule 'a/b/c/\\x01\\xff\\x27' is malformed");
  parse_fail("a/b/c/dddddddddddddddddddddddddddddddddddddddddddddddddddddd"
             "dddddddddddddddddddddd",
             "rule 'a/b/c/dddddddddddddddddddddddddddddddddddddddddddddddd"
             "dddddd...' is malformed");
  /* err may be NULL */
  {
    ts_router *r = NULL;
    CHECK_EQ_INT(ts_router_new("a,,b", &r, NULL), TS_ERROR);
    CHECK(r == NULL);
  }
}


/* More edges: the preset is exact and case-sensitive; "ldk" with parts is
** an ordinary rule; many presets fill the router exactly; a trailing empty
** key part ("a//") is valid and matches no storable key. */
static void test_more_edges(void) {
  ts_router *r = parse_ok("LDK,Ldk");
  if (r != NULL) {
    CHECK_EQ_INT(route(r, "", "", "scorer"), TS_TIER_PRIMARY);
    CHECK_EQ_INT(route(r, "LDK", "", "k"), TS_TIER_EPHEMERAL);
    CHECK_EQ_INT(route(r, "Ldk", "s", "k"), TS_TIER_EPHEMERAL);
    CHECK_EQ_INT(route(r, "ldk", "", "k"), TS_TIER_PRIMARY);
    ts_router_free(r);
  }
  r = parse_ok("ldk/,/ldk");
  if (r != NULL) {
    CHECK_EQ_INT(route(r, "", "", "scorer"), TS_TIER_PRIMARY);
    CHECK_EQ_INT(route(r, "ldk", "", "k"), TS_TIER_EPHEMERAL);
    CHECK_EQ_INT(route(r, "ldk", "s", "k"), TS_TIER_PRIMARY);
    CHECK_EQ_INT(route(r, "", "ldk", "k"), TS_TIER_EPHEMERAL);
    ts_router_free(r);
  }
  r = parse_ok(" ldk\t,\nldk ,ldk,ldk,ldk");   /* 5 presets: 15 rules */
  if (r != NULL) {
    CHECK_EQ_INT(route(r, "", "", "network_graph"), TS_TIER_EPHEMERAL);
    CHECK_EQ_INT(route(r, "", "", "external_pathfinding_scores_cache"),
                 TS_TIER_EPHEMERAL);
    CHECK_EQ_INT(route(r, "", "", "manager"), TS_TIER_PRIMARY);
    ts_router_free(r);
  }
  r = parse_ok("a//");                /* pns 'a', sns '', key '' */
  if (r != NULL) {
    CHECK(!ts_router_is_empty(r));
    CHECK_EQ_INT(route(r, "a", "", "k"), TS_TIER_PRIMARY);
    CHECK_EQ_INT(ts_router_route(r, N("a"), EMPTY, EMPTY), TS_TIER_EPHEMERAL);
    ts_router_free(r);
  }
  r = parse_ok("/ /");                /* pns '', sns ' ', key '' */
  if (r != NULL) {
    CHECK_EQ_INT(route(r, "", " ", ""), TS_TIER_EPHEMERAL);
    CHECK_EQ_INT(route(r, "", "", "k"), TS_TIER_PRIMARY);
    ts_router_free(r);
  }
}

int main(void) {
  test_empty();
  test_ldk();
  test_pns_rule();
  test_pair_rule();
  test_key_rule();
  test_empty_parts();
  test_spaces();
  test_mixed();
  test_namespace_route();
  test_errors();
  test_more_edges();
  return CHECK_DONE();
}
