-- Runs inside each tenant's own schema (its search path): no schema name, no tenant column.
CREATE TABLE notes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    body text NOT NULL
);
