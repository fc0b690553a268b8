// Package lockmgr owns TTL locks with fencing tokens: acquire (several
// resources, all or none, optionally waiting), renew, release, lookup by
// resource and by prefix, and expiry.
//
// Every change is a command on the sequencer, so acquisitions never race and
// survive restarts with their absolute expiry. A lock is free from its
// expires_at on: an acquire that finds an expired holder writes its
// lock.expired first and takes the resources; otherwise one expiry loop,
// whose schedule is the time-ordered expiry index in storage, writes
// lock.expired soon after. Fencing tokens come from one persisted counter,
// incremented in the command that acquires, so they increase strictly over
// the server's whole life.
//
// Waiting acquirers queue in memory per resource, first come first served:
// a waiter enqueues on all its resources at once, and may try only when it
// is first in every queue it is in. Since a waiter takes all its resources
// in one command or none (it never holds some while waiting for others),
// no order of resources can deadlock; and since every queue orders waiters
// by the same arrival order, the earliest waiter is always first wherever
// it waits, so someone always progresses. A new acquire does not jump ahead
// of queued waiters.
//
// It must never block the sequencer: waiting happens in the caller's
// goroutine, outside commands.
package lockmgr
