#!/usr/bin/env python3
"""Draw the benchmark's figures as SVG with gnuplot, from its JSON lines.

  python3 bench/plot.py RESULTS.jsonl [PAGES.jsonl] --out DIR
      DIR/commits.svg: commits/s against connections (workloads 8-10) from
      RESULTS; DIR/pages.svg: the cost of a newest-first page against the
      namespace's size (workload 4) from PAGES (default RESULTS), so a
      1,000,000-row run can give the wider axis.
  python3 bench/plot.py --check
      redraws the committed figures (docs/img/) from the committed results
      (bench/results.jsonl, bench/results-1m.jsonl) and fails unless they
      are the same files: a figure never tells another run's story.

bash bench/run.sh calls the first form after its runs.  Needs gnuplot
(Debian: gnuplot-nox).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIGURES = ("commits.svg", "pages.svg")

# Workload 8-10 series: (title, level, schema, column of the row, style).
COMMIT_SERIES = {
    "durable": [
        ("tierstore durable, temp schema", "durable", "temp", "tierstore", 1),
        ("tierstore durable, one db file", "durable", "main", "tierstore", 2),
        ("SQLite + backup, synchronous=FULL", "durable", "temp", "native", 3),
    ],
    "written": [
        ("tierstore applied", "applied", "temp", "tierstore", 4),
        ("tierstore written", "written", "temp", "tierstore", 5),
        ("SQLite + backup, synchronous=NORMAL", "written", "temp", "native", 3),
    ],
}


def fail(msg):
    sys.exit("tierstore: %s" % msg)


def load(path):
    """The run record and the result rows of one bench JSON-lines file."""
    run, rows = None, []
    try:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                try:
                    rec = json.loads(line)
                except ValueError:
                    fail("%s line %d is not JSON" % (path, n))
                if rec.get("type") == "run":
                    run = rec
                elif rec.get("type") == "result":
                    rows.append(rec)
    except OSError as e:
        fail("cannot read %s: %s" % (path, e.strerror))
    if run is None:
        fail("%s has no run record: not a bench results file" % path)
    return run, rows


def data_block(name, points):
    """A gnuplot inline data block of (x, y) points."""
    lines = ["$%s << EOD" % name] + ["%s %s" % (x, repr(float(y))) for x, y in points] + ["EOD"]
    return "\n".join(lines) + "\n"


def commit_points(rows, level, schema, column):
    """(connections, commits/s) of one series, by connections."""
    pts = []
    for r in rows:
        if r.get("level") == level and r.get("schema") == schema and r.get("unit") == "commits/s":
            if r.get(column) is not None:
                pts.append((int(r["connections"]), r[column]))
    return sorted(pts)


def run_caption(run):
    """What a figure's reader needs to know of the run it shows."""
    return "%s, %d rows; %s" % (run["time"][:10], int(run["rows"]), run.get("label", "?"))


def commits_script(path, run, rows):
    """gnuplot commands for commits.svg: two panels, durable against FULL
    and applied/written against NORMAL."""
    script = ""
    panels = []
    for panel, series in COMMIT_SERIES.items():
        plots = []
        for i, (title, level, schema, column, style) in enumerate(series):
            pts = commit_points(rows, level, schema, column)
            if len(pts) < 2:
                fail("%s has no commits/s rows of %s (%s schema) for several connections: "
                     "a run of an older bench? run bash bench/run.sh" % (path, level, schema))
            name = "%s%d" % (panel, i)
            script += data_block(name, pts)
            plots.append("$%s using 1:2 with linespoints ls %d title '%s'" % (name, style, title))
        panels.append(plots)
    script += """set terminal svg size 960,500 dynamic enhanced font 'sans,11' background rgb 'white'
set style line 1 lc rgb '#1b6ac9' lw 2 pt 7 ps 0.8
set style line 2 lc rgb '#1b6ac9' lw 2 pt 5 ps 0.8 dt 3
set style line 3 lc rgb '#c0392b' lw 2 pt 9 ps 0.9 dt 2
set style line 4 lc rgb '#2e8b57' lw 2 pt 7 ps 0.8
set style line 5 lc rgb '#8e44ad' lw 2 pt 5 ps 0.8
set logscale xy
set xrange [0.8:20]
set xtics ('1' 1, '4' 4, '16' 16)
set format y '%.0s%c'
set grid ytics mytics lc rgb '#dddddd'
set bmargin 8
set key vertical maxrows 3 box center top at graph 0.5, graph -0.15
set xlabel 'connections committing at once (one thread each)'
set ylabel '1-row commits/s (log scale)'
"""
    script += "set multiplot layout 1,2 title '1-row commits with a backup: %s'\n" % run_caption(run)
    script += "set title 'durable'\nplot " + ", ".join(panels[0]) + "\n"
    script += "set title 'applied and written'\nplot " + ", ".join(panels[1]) + "\n"
    script += "unset multiplot\n"
    return script


def pages_script(path, run, rows):
    """gnuplot commands for pages.svg: us per page against namespace size."""
    pts = {"tierstore": [], "native": []}
    for r in rows:
        if r.get("unit") == "us/page" and r.get("keys"):
            for column in pts:
                if r.get(column) is not None:
                    pts[column].append((int(r["keys"]), r[column]))
    if len(pts["tierstore"]) < 2 or len(pts["native"]) < 2:
        fail("%s has no us/page rows with keys for several namespace sizes: "
             "a run of an older bench? run bash bench/run.sh" % path)
    script = data_block("ts", sorted(pts["tierstore"])) + data_block("nat", sorted(pts["native"]))
    script += """set terminal svg size 640,460 dynamic enhanced font 'sans,11' background rgb 'white'
set logscale x
set format x '%.0s%c'
set autoscale xfix
set offsets graph 0.05, graph 0.05, 0, 0
set yrange [0:*]
set grid ytics lc rgb '#dddddd'
set key bottom right box opaque
set xlabel 'keys in the namespace (log scale)'
set ylabel 'us per page of 50, newest first'
"""
    script += "set title 'One page of a newest-first listing: %s'\n" % run_caption(run)
    script += ("plot $ts using 1:2 with linespoints lc rgb '#1b6ac9' lw 2 pt 7 title 'tierstore (creation index)', "
               "$nat using 1:2 with linespoints lc rgb '#c0392b' lw 2 pt 9 dt 2 "
               "title 'SQLite (index on a creation-order column)'\n")
    return script


def gnuplot(script, out):
    """Run gnuplot on script, writing out."""
    exe = shutil.which("gnuplot")
    if not exe:
        fail("gnuplot not found: install it (Debian: apt-get install gnuplot-nox)")
    p = subprocess.run([exe], input="set output '%s'\n" % out.replace("'", "''") + script,
                       capture_output=True, text=True)
    if p.returncode != 0 or not os.path.exists(out):
        fail("gnuplot failed drawing %s: %s" % (out, p.stderr.strip()))


def draw(results, pages, out_dir):
    """Write out_dir/commits.svg from results and out_dir/pages.svg from pages."""
    os.makedirs(out_dir, exist_ok=True)
    run, rows = load(results)
    gnuplot(commits_script(results, run, rows), os.path.join(out_dir, "commits.svg"))
    prun, prows = load(pages)
    gnuplot(pages_script(pages, prun, prows), os.path.join(out_dir, "pages.svg"))
    for name in FIGURES:
        ET.parse(os.path.join(out_dir, name))  # a well-formed SVG document


def check():
    """Fail unless docs/img holds the drawing of the committed results."""
    results = os.path.join(HERE, "results.jsonl")
    big = os.path.join(HERE, "results-1m.jsonl")
    pages = big if os.path.exists(big) else results
    with tempfile.TemporaryDirectory() as tmp:
        draw(results, pages, tmp)
        for name in FIGURES:
            committed = os.path.join(ROOT, "docs", "img", name)
            with open(os.path.join(tmp, name), "rb") as f:
                fresh = f.read()
            try:
                with open(committed, "rb") as f:
                    old = f.read()
            except OSError:
                fail("%s is missing: run python3 bench/plot.py --out docs/img bench/results.jsonl ..." % committed)
            if fresh != old:
                fail("%s is not the drawing of %s: redraw it with bash bench/run.sh or bench/plot.py"
                     % (committed, os.path.basename(pages if name == "pages.svg" else results)))
            text = fresh.decode()
            titles = [s[0] for v in COMMIT_SERIES.values() for s in v] if name == "commits.svg" else \
                ["tierstore (creation index)", "SQLite (index on a creation-order column)"]
            for t in titles:
                if t not in text:
                    fail("%s lacks the series '%s'" % (committed, t))
    print("docs/img: %s drawn from the committed results" % ", ".join(FIGURES))


def main(argv):
    if argv == ["--check"]:
        return check()
    if "--out" not in argv or argv.index("--out") + 1 >= len(argv):
        fail("usage: python3 bench/plot.py RESULTS.jsonl [PAGES.jsonl] --out DIR | --check")
    i = argv.index("--out")
    out_dir = argv[i + 1]
    files = argv[:i] + argv[i + 2:]
    if len(files) not in (1, 2):
        fail("usage: python3 bench/plot.py RESULTS.jsonl [PAGES.jsonl] --out DIR | --check")
    draw(files[0], files[-1], out_dir)
    print("wrote %s" % ", ".join(os.path.join(out_dir, n) for n in FIGURES))


if __name__ == "__main__":
    main(sys.argv[1:])
