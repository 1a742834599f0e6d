DROP TABLE event_sequence;
DROP TABLE events;
