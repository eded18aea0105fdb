-- A later change: every tenant schema gets it, once, in order, recorded in the schema.
ALTER TABLE notes ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();
