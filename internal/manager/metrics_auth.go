package manager

import (
	"bytes"
	"net/http"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// authnFailed is what controller-runtime's filter answers, with status 500,
// when the delegated authenticator returns an error. It returns one for every
// bearer token the API server does not authenticate (expired, revoked,
// garbage: k8s.io/apiserver's bearertoken turns "not authenticated" into
// "invalid bearer token"), not only when the TokenReview itself fails.
const authnFailed = "Authentication failed"

// metricsAuthFilter is controller-runtime's WithAuthenticationAndAuthorization
// (TokenReview, then SubjectAccessReview for GET /metrics), except that a
// request whose token is not authenticated gets 401 Unauthorized, as from
// kube-apiserver, instead of 500, and is logged at V(4) instead of as an
// error with a stack trace: anyone who can reach the port could otherwise
// fill the log, and a scraper with an expired token would look like a
// broken manager. A TokenReview the API server refuses (the manager lacks
// config/rbac/metrics_auth_role.yaml) is then a 401 too, as in kube-apiserver's
// delegated authentication; k8s.io/apiserver still logs it as an error.
// Authorization errors (the SubjectAccessReview could not be made) stay 500
// and errors.
func metricsAuthFilter(c *rest.Config, hc *http.Client) (metricsserver.Filter, error) {
	upstream, err := filters.WithAuthenticationAndAuthorization(c, hc)
	if err != nil {
		return nil, err
	}
	return func(log logr.Logger, next http.Handler) (http.Handler, error) {
		// passed marks a request the filter let through: whatever the
		// metrics handler answers then is its own.
		passed := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if aw, ok := w.(*authnWriter); ok {
				aw.passed = true
				w = aw.ResponseWriter
			}
			next.ServeHTTP(w, r)
		})
		if sink := log.GetSink(); sink != nil {
			if cd, ok := sink.(logr.CallDepthLogSink); ok {
				sink = cd.WithCallDepth(1) // the caller is the filter, not quietAuthnSink
			}
			log = log.WithSink(quietAuthnSink{sink})
		}
		h, err := upstream(log, passed)
		if err != nil {
			return nil, err
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			aw := &authnWriter{ResponseWriter: w}
			h.ServeHTTP(aw, r)
			aw.flush()
		}), nil
	}, nil
}

// authnWriter holds back a 500 written by the filter itself until its body
// says whether it was an authentication failure.
type authnWriter struct {
	http.ResponseWriter
	passed, held bool
}

func (w *authnWriter) WriteHeader(code int) {
	if !w.passed && !w.held && code == http.StatusInternalServerError {
		w.held = true
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *authnWriter) Write(b []byte) (int, error) {
	if w.held {
		w.held = false
		if bytes.HasPrefix(b, []byte(authnFailed)) {
			http.Error(w.ResponseWriter, http.StatusText(http.StatusUnauthorized), http.StatusUnauthorized)
			return len(b), nil
		}
		w.ResponseWriter.WriteHeader(http.StatusInternalServerError)
	}
	return w.ResponseWriter.Write(b)
}

// flush sends a held status that no body followed.
func (w *authnWriter) flush() {
	if w.held {
		w.held = false
		w.ResponseWriter.WriteHeader(http.StatusInternalServerError)
	}
}

// quietAuthnSink logs the filter's authentication failures at V(4).
type quietAuthnSink struct{ logr.LogSink }

func (s quietAuthnSink) Error(err error, msg string, kv ...any) {
	if msg != authnFailed {
		s.LogSink.Error(err, msg, kv...)
		return
	}
	if s.Enabled(4) {
		s.Info(4, msg, append(kv, "error", err.Error())...)
	}
}

func (s quietAuthnSink) WithValues(kv ...any) logr.LogSink {
	return quietAuthnSink{s.LogSink.WithValues(kv...)}
}

func (s quietAuthnSink) WithName(name string) logr.LogSink {
	return quietAuthnSink{s.LogSink.WithName(name)}
}
