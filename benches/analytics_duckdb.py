"""The analytics benchmark's DuckDB anchor (see benches/src/bin/analytics/main.rs).

Reads JSON lines on stdin. The first names the facts folder and the threads:
{"facts": DIR, "threads": 2}; it creates the views status_intervals_unique, status_intervals and
order_cycles over the folder's Parquet files, as the DataFusion engine registers them, and
answers {"version": ...}. Each later line is {"sql": ...}, answered
with {"rows": [{column: value}, ...]} or {"error": message}.
"""

import glob
import json
import os
import sys

import duckdb


def months(root, table):
    """The table's files, one list per month folder."""
    folders = sorted(glob.glob(os.path.join(root, table, "project=*", "month=*")))
    found = [sorted(glob.glob(os.path.join(folder, "*.parquet"))) for folder in folders]
    return [files for files in found if files]


def view(connection, name, paths, like):
    """A view over `paths` whose instants are microseconds since the epoch, BIGINT, as the
    benchmark's SQL (DataFusion's) casts them: DuckDB does not cast TIMESTAMPTZ to BIGINT.
    Without files, an empty view shaped as the file `like`."""
    listing = ", ".join("'" + path.replace("'", "''") + "'" for path in (paths or [like]))
    source = f"read_parquet([{listing}], union_by_name = true)"
    columns = connection.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    instants = [column for column, kind, *_ in columns if kind.startswith("TIMESTAMP")]
    replace = ", ".join(f"epoch_us({column}) AS {column}" for column in instants)
    select = f"* REPLACE ({replace})" if instants else "*"
    empty = "" if paths else " LIMIT 0"
    connection.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT {select} FROM {source}{empty}")


def views(connection, root):
    """The tables as the DataFusion engine registers them: interval months of a single file
    apart (their rows are final), every cycle file together."""
    intervals = months(root, "status_intervals")
    cycles = months(root, "order_cycles")
    like = intervals[0][0]
    view(connection, "status_intervals_unique", [f for m in intervals if len(m) == 1 for f in m], like)
    view(connection, "status_intervals", [f for m in intervals if len(m) > 1 for f in m], like)
    view(connection, "order_cycles", [f for m in cycles for f in m], cycles[0][0])


def plain(value):
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return str(value)


def main():
    connection = None
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if "facts" in request:
                connection = duckdb.connect()
                connection.execute(f"SET threads = {int(request['threads'])}")
                views(connection, request["facts"])
                answer = {"version": duckdb.__version__}
            else:
                cursor = connection.execute(request["sql"])
                names = [column[0] for column in cursor.description]
                answer = {"rows": [dict(zip(names, map(plain, row))) for row in cursor.fetchall()]}
        except Exception as error:  # every failure goes back to the benchmark, named
            answer = {"error": str(error)}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
