-- optimizer_switch and other optimizer variables set once hold for every later statement.
SET optimizer_switch = 'index_merge=off,mrr=on';
SELECT LOCATE('index_merge=off', @@optimizer_switch) > 0 AS index_merge_off,
  LOCATE('mrr=on', @@optimizer_switch) > 0 AS mrr_on;
SELECT 'another statement' AS stage;
SELECT LOCATE('index_merge=off', @@optimizer_switch) > 0 AS still_off,
  @@optimizer_switch = @@global.optimizer_switch AS is_default;
SET optimizer_search_depth = 7, optimizer_prune_level = 0, join_cache_level = 1;
SELECT @@optimizer_search_depth, @@optimizer_prune_level, @@join_cache_level;
SELECT 'another statement' AS stage;
SELECT @@optimizer_search_depth, @@optimizer_prune_level, @@join_cache_level;
SET optimizer_switch = 'default';
SELECT @@optimizer_switch = @@global.optimizer_switch AS is_default;
SET optimizer_search_depth = DEFAULT, optimizer_prune_level = DEFAULT, join_cache_level = DEFAULT;
SELECT @@optimizer_search_depth = @@global.optimizer_search_depth AS is_default;
