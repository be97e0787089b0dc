package server

import (
	"context"
	"fmt"
	"net/http"

	"google.golang.org/grpc"
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
	healthpb.RegisterHealthServer(g, s.health)
	for _, name := range healthServices {
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	if s.cfg.Reflection {
		reflection.Register(g)
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
