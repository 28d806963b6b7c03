-- leadstream warehouse schema (DuckDB). All times are UTC TIMESTAMPs with milliseconds.
--
-- Every published snapshot is one DuckDB file that holds these tables and views, swapped
-- in atomically: a reader sees one whole snapshot, never a mix of two.
-- `leadstream run` creates the file; open it with duckdb.connect(path, read_only=True).
--
-- Sections start with "-- table: NAME" or "-- view: NAME"; the writer runs them in order.

-- table: contacts
-- Known contacts (user_id set) and still-anonymous profiles (user_id null). A merged
-- anonymous profile no longer appears here: its anonymousId lives on in anonymous_ids.
-- contact_id is unique (each build keeps the newest row per contact) but not declared a
-- PRIMARY KEY: its index made a build's delete and re-insert of the changed contacts
-- about five times slower.
CREATE TABLE contacts (
    contact_id     VARCHAR,              -- userId of a known contact, anonymousId of an anonymous profile
    user_id        VARCHAR,              -- null while anonymous
    email          VARCHAR,              -- the `email` trait
    anonymous_ids  VARCHAR[],            -- every device (anonymousId) ever linked to the contact
    traits         JSON,                 -- identify traits, newest value per key
    grade          VARCHAR,              -- fit grade A-F from traits
    fit            DOUBLE,               -- fit points behind the grade
    stage          VARCHAR,              -- lifecycle stage from the stage profile's score
    stage_since    TIMESTAMP,
    segments       VARCHAR[],            -- dynamic segments the contact is in now
    first_seen     TIMESTAMP,
    last_seen      TIMESTAMP,
    first_campaign JSON,                 -- context.campaign of the earliest event that had one
    visits         INTEGER,
    counts         JSON,                 -- lifetime event counts: track name, or $page, $identify, ...
    lists          VARCHAR[],            -- static lists from add_to_list / remove_from_list actions
    events         INTEGER,              -- events applied to the contact
    updated_at     TIMESTAMP,            -- event time of the newest event applied
    deleted        BOOLEAN               -- erased on request (GDPR): only ids remain; its events are gone
);

-- table: contact_score_values
-- One row per contact and scoring profile the contact has points in, as the engine last
-- settled it; read the contact_scores view, which brings half-life decay up to the snapshot.
CREATE TABLE contact_score_values (
    contact_id VARCHAR,
    profile    VARCHAR,
    score      DOUBLE,
    settled_at TIMESTAMP   -- event time the score had this value (decaying profiles only)
);

-- table: scoring_profiles
-- The scoring profiles of the config the snapshot was built with, and how their scores decay.
CREATE TABLE scoring_profiles (
    profile          VARCHAR,
    half_life_ms     BIGINT,     -- continuous decay: the score halves every half_life_ms of event time
    inactive_after_ms BIGINT,    -- step decay: times factor for every inactive_after_ms without activity
    factor           DOUBLE
);

-- table: identities
-- Every identifier that resolves to a contact: each contact's own user_id, and each
-- device (anonymousId, or an alias previousId) linked to a known contact.
CREATE TABLE identities (
    identifier VARCHAR,
    kind       VARCHAR,    -- 'user_id' or 'anonymous_id'
    contact_id VARCHAR,
    linked_at  TIMESTAMP   -- event time of the identify/alias that made the link
);

-- table: merges
-- Anonymous profiles that merged into a known contact when their device identified.
CREATE TABLE merges (
    anonymous_id VARCHAR,
    contact_id   VARCHAR,
    merged_at    TIMESTAMP
);

-- table: segment_members
CREATE TABLE segment_members (
    segment    VARCHAR,
    contact_id VARCHAR,
    since      TIMESTAMP   -- event time the contact entered
);

-- table: workflow_members
-- Where each contact is in each workflow now: one row per active run (a contact can
-- have several runs of an every_time workflow, e.g. one per order awaiting feedback).
CREATE TABLE workflow_members (
    workflow   VARCHAR,
    step       VARCHAR,    -- the step's name (or its position)
    contact_id VARCHAR,
    since      TIMESTAMP,  -- when the run reached this step
    due_at     TIMESTAMP,  -- when its wait ends (null: waiting for an event)
    entered_at TIMESTAMP   -- when the run entered the workflow
);

-- table: triggers
-- Every trigger emitted, with the fields of the triggers JSONL output. Those of a contact
-- erased on request (and of the anonymous profiles merged into it) show no email, params or
-- reason, except its contact_deleted trigger.
CREATE TABLE triggers (
    trigger_id VARCHAR,    -- deterministic: hash of rule, contact and occurrence
    action     VARCHAR,
    rule       VARCHAR,
    contact_id VARCHAR,
    user_id    VARCHAR,
    email      VARCHAR,
    event_time TIMESTAMP,  -- the causing event's time, or a timer's due time
    params     JSON,
    reason     JSON
);

-- table: events
-- Accepted events. contact_id is the contact that owns the event now: events an
-- anonymous profile collected belong to the known contact it merged into.
CREATE TABLE events (
    message_id   VARCHAR,
    type         VARCHAR,
    name         VARCHAR,  -- track event name, or page/screen name
    contact_id   VARCHAR,
    anonymous_id VARCHAR,
    user_id      VARCHAR,
    timestamp    TIMESTAMP,
    properties   JSON,
    context      JSON      -- campaign/UTM, page, consent, ...
);

-- table: dead_letters
CREATE TABLE dead_letters (
    reason VARCHAR,   -- machine-readable code, see schemas/dead_letter.schema.json
    detail VARCHAR,
    raw    VARCHAR,   -- the rejected line as read
    source VARCHAR    -- file:line or partition:offset
);

-- table: snapshots
-- One row per published snapshot; counts are cumulative. Input reconciles:
-- lines_read = accepted + dead_lettered + duplicates + buffered (buffered is 0 at the end).
CREATE TABLE snapshots (
    snapshot_id   INTEGER,
    taken_at      TIMESTAMP,  -- wall-clock time of publication
    watermark     TIMESTAMP,  -- event time every table is consistent up to (at the end of input: the newest event time)
    lines_read    BIGINT,
    accepted      BIGINT,
    dead_lettered BIGINT,
    duplicates    BIGINT,
    late          BIGINT,
    buffered      BIGINT,
    contacts      BIGINT,
    triggers      BIGINT,
    config        VARCHAR,    -- fingerprint of the rules config
    suppressed    BIGINT      -- of accepted: events of contacts erased on request, applied to nothing, not stored
);

-- view: contact_scores
-- Each contact's score per profile as of the snapshot's watermark. A half-life score fades
-- continuously, and the engine settles it only when the contact has an event or a timer
-- (a threshold crossing): brought here to the watermark, it is what a condition on it
-- would read now. Step decay (inactive_after) is applied by its timers and shown as it is.
CREATE VIEW contact_scores AS
SELECT v.contact_id, v.profile,
       CASE WHEN p.half_life_ms IS NULL OR v.settled_at IS NULL OR w.at IS NULL OR w.at <= v.settled_at THEN v.score
            ELSE round(v.score * pow(2.0, -(epoch_ms(w.at) - epoch_ms(v.settled_at)) / p.half_life_ms), 9)
       END AS score
FROM contact_score_values v
LEFT JOIN scoring_profiles p USING (profile)
CROSS JOIN (SELECT max(watermark) AS at FROM snapshots) w;

-- view: contacts_per_stage
-- Contacts erased on request have no stage and are left out.
CREATE VIEW contacts_per_stage AS
SELECT stage, count(*) AS contacts, count(*) FILTER (WHERE user_id IS NOT NULL) AS known_contacts
FROM contacts WHERE deleted IS NOT TRUE GROUP BY stage ORDER BY contacts DESC;

-- view: contacts_per_segment
CREATE VIEW contacts_per_segment AS
SELECT segment, count(*) AS contacts FROM segment_members GROUP BY segment ORDER BY contacts DESC;

-- view: triggers_per_action_per_day
-- Triggers per action and day. "E-mails sent" per day is with_email on the send_email rows:
-- a send_email of an anonymous profile (or of a contact not yet known by its address) has
-- no address to send to, and counts in triggers only.
CREATE VIEW triggers_per_action_per_day AS
SELECT CAST(event_time AS DATE) AS day, action, count(*) AS triggers, count(email) AS with_email
FROM triggers GROUP BY ALL ORDER BY day, action;

-- view: targeted_contacts_per_day
-- Distinct contacts reached by a configured action (not stage/segment bookkeeping, not erasure) per day.
-- A person is counted once: triggers of an anonymous profile count for the contact it merged into.
CREATE VIEW targeted_contacts_per_day AS
SELECT CAST(t.event_time AS DATE) AS day, count(DISTINCT COALESCE(m.contact_id, t.contact_id)) AS contacts
FROM triggers t LEFT JOIN merges m ON m.anonymous_id = t.contact_id
WHERE t.action NOT IN ('stage_changed', 'segment_entered', 'segment_exited', 'contact_deleted')
GROUP BY ALL ORDER BY day;

-- view: contacts_in_scenario
-- Sendinblue's "contacts in scenario": contacts in each workflow now, and per step.
CREATE VIEW contacts_in_scenario AS
SELECT workflow, step, count(DISTINCT contact_id) AS contacts
FROM workflow_members GROUP BY GROUPING SETS ((workflow), (workflow, step)) ORDER BY workflow, step NULLS FIRST;

-- view: targeted_contacts_per_day_per_workflow
-- Distinct contacts a workflow's actions reached per day; as in targeted_contacts_per_day, a
-- person is counted once: triggers of an anonymous profile count for the contact it merged into.
CREATE VIEW targeted_contacts_per_day_per_workflow AS
SELECT CAST(t.event_time AS DATE) AS day, substr(t.rule, 11) AS workflow,
       count(DISTINCT COALESCE(m.contact_id, t.contact_id)) AS contacts, count(*) AS actions
FROM triggers t LEFT JOIN merges m ON m.anonymous_id = t.contact_id
WHERE t.rule LIKE 'workflows.%' GROUP BY ALL ORDER BY day, workflow;

-- view: activity_log
-- The event and trigger log: filter by time, kind, event type/name or rule. A contact's log
-- includes its anonymous part: events and triggers of a profile it merged are under its id.
CREATE VIEW activity_log AS
SELECT timestamp AS time, 'event' AS kind, contact_id, type AS event_type, name, NULL AS rule,
       NULL AS action, message_id AS id
FROM events
UNION ALL
SELECT t.event_time AS time, 'trigger' AS kind, COALESCE(m.contact_id, t.contact_id) AS contact_id,
       NULL AS event_type, NULL AS name, t.rule, t.action, t.trigger_id AS id
FROM triggers t LEFT JOIN merges m ON m.anonymous_id = t.contact_id;
