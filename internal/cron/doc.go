// Package cron owns cron jobs: their durable records, the parsing of their
// expressions (five, six or seven fields, in an IANA time zone, through
// github.com/adhocore/gronx) and the one loop that fires them.
//
// A fire is one command on the sequencer that publishes the job's queue
// message, emits cron.fired and moves the job's record past the scheduled
// time, so a crash can never separate the message from the record: each
// scheduled time fires at most once, and exactly once while the server
// runs. The command is planned outside the writer from the record as read
// and applies only if the record has not moved since, so the same time
// offered twice fires once. Each fire holds the lock cron/{name}.
//
// Next times come from the expression after the last time dealt with,
// never from the previous fire plus a period, so the schedule does not
// drift. Times before the scheduler started, or later than Config.Misfire,
// were missed: catch_up "skip" records them in one cron.skipped event and
// a metric, catch_up "once" fires once for the latest of them. Nothing is
// missed silently.
//
// It must never block the sequencer with work of its own: counting missed
// times and computing next times happens in the loop, outside commands.
package cron
