package router

import (
	"fmt"
	"strings"
)

// MaxTopicLen bounds a subscription topic.
const MaxTopicLen = 512

// CheckTopic validates a subscription topic: segments of names
// ([A-Za-z0-9._~:@-]) separated by "/", optionally ending in "/*" for a
// prefix subscription.
func CheckTopic(t string) error {
	if t == "" {
		return fmt.Errorf("topic: required")
	}
	if len(t) > MaxTopicLen {
		return fmt.Errorf("topic: longer than %d bytes", MaxTopicLen)
	}
	body := strings.TrimSuffix(t, "/*")
	for _, seg := range strings.Split(body, "/") {
		if seg == "" {
			return fmt.Errorf("topic: %q has an empty segment", t)
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			switch {
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			case c == '.', c == '_', c == '~', c == ':', c == '@', c == '-':
			default:
				return fmt.Errorf("topic: %q: only names separated by / and an optional trailing /* are allowed", t)
			}
		}
	}
	return nil
}

// isPrefix reports whether t is a prefix subscription, and its prefix
// ("contexts/" for "contexts/*").
func isPrefix(t string) (string, bool) {
	if strings.HasSuffix(t, "/*") {
		return t[:len(t)-1], true
	}
	return "", false
}

// Matches reports whether an event topic matches a subscription topic.
func Matches(sub, topic string) bool {
	if p, ok := isPrefix(sub); ok {
		return strings.HasPrefix(topic, p)
	}
	return sub == topic
}
