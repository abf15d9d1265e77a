"""Schema migrations: which a release carries, in which phase they run, how they are judged, and when a
rollback must be refused because the schema no longer supports the release it would go back to.

    catalog         the migrations of a release (expand or contract), in the order they run
    lint            judge_sql / judge_file / judge_files: a file's statements judged, the schema carried along
    findings        the classes (safe, needs-window, breaking) and the verdicts: Finding, StatementVerdict, ...
    statements      a file cut into statements; a statement read word by word
    sqlschema       what the linter knows of tables, columns and indexes (Schema); createtable reads a
                    CREATE TABLE into it, live reads a database's catalog into it (--database)
    typechange      how a column's new type relates to its old one
    rules_common    what both dialects' rules share: a Judgement, the statement walker, ALTER TABLE's frame
    rules_mysql     MySQL and MariaDB statements; mysql_alter (ALTER TABLE actions), mysql_columns (MODIFY,
                    CHANGE), mysql_server (versions, features, algorithms)
    rules_postgres  PostgreSQL statements; pg_alter (ALTER TABLE actions), pg_server (versions, features)
    squawk          squawk run on a file, its findings mapped to our classes
"""
