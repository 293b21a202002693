-- Dagster's storage beside mdstudio's store (run once, when the PostgreSQL volume is new).
CREATE DATABASE dagster OWNER mdstudio;
