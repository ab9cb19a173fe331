-- 0007_metric_carry: what retention removed, summed per figure and key, so the counters /metrics computes
-- from the log never go down (Prometheus reads any decrease of a counter as a restart from zero and would
-- count the whole remaining total again). store/carry.py names the figures; retention adds what it removes.
CREATE TABLE metric_carry (
    figure VARCHAR NOT NULL, app_id VARCHAR NOT NULL, k1 VARCHAR NOT NULL, k2 VARCHAR NOT NULL,
    n BIGINT NOT NULL, total DOUBLE NOT NULL
);
