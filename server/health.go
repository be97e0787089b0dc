package server

import (
	"context"
	"fmt"
	"net/http"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// healthServices are the names the health service answers for: "" (the
// whole server) and each of syncd's services.
var healthServices = []string{"",
	pb.SyncService_ServiceDesc.ServiceName, pb.EnrollService_ServiceDesc.ServiceName,
	pb.AdminService_ServiceDesc.ServiceName, pb.ExportService_ServiceDesc.ServiceName}

// registerOps adds the standard grpc.health.v1 service (callable without a
// credential) and, with Config.Reflection, server reflection. Health says
// SERVING from here on (the database is open: New needs it) and
// NOT_SERVING once Close starts the shutdown.
func (s *Server) registerOps(g *grpc.Server) {
	healthpb.RegisterHealthServer(g, &healthService{Server: s.health, closed: s.hub.closed})
	for _, name := range healthServices {
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	if s.cfg.Reflection {
		reflection.Register(g)
	}
}

// healthService is grpc's health server with a Watch that ends when the
// server closes, after saying NOT_SERVING: grpc's own Watch lasts as long
// as its client wants, so a load balancer watching would hold a graceful
// stop to its timeout. syncd's statuses change only then (SERVING from
// Register, NOT_SERVING from Close).
type healthService struct {
	*health.Server
	closed <-chan struct{}
}

func (h *healthService) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	st := healthpb.HealthCheckResponse_SERVICE_UNKNOWN
	if resp, err := h.Check(stream.Context(), req); err == nil {
		st = resp.GetStatus()
	}
	if err := stream.Send(&healthpb.HealthCheckResponse{Status: st}); err != nil {
		return err
	}
	select {
	case <-stream.Context().Done():
		return nil
	case <-h.closed:
		if st == healthpb.HealthCheckResponse_SERVICE_UNKNOWN {
			return nil
		}
		return stream.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_NOT_SERVING})
	}
}

// openService says whether calls to service (as "/pkg.Service") need no
// credential: health always, reflection when turned on.
func (s *Server) openService(service string) bool {
	switch service {
	case "/" + healthpb.Health_ServiceDesc.ServiceName:
		return true
	case "/grpc.reflection.v1.ServerReflection", "/grpc.reflection.v1alpha.ServerReflection":
		return s.cfg.Reflection
	}
	return false
}

// HealthHandler answers an HTTP health check (for load balancers and
// probes that do not speak gRPC over TLS): 200 SERVING, or 503 NOT_SERVING
// during shutdown.
func (s *Server) HealthHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := s.health.Check(context.Background(), &healthpb.HealthCheckRequest{})
		st := healthpb.HealthCheckResponse_NOT_SERVING
		if err == nil {
			st = resp.GetStatus()
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if st != healthpb.HealthCheckResponse_SERVING {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintln(w, st)
	})
}
