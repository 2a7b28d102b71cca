/**
 * Every generated Protobuf-ES schema of Switchyard, re-exported under one name
 * per package so that message names that repeat across packages stay apart.
 */
export * as common from "./gen/switchyard/common/v1/chat_pb.js";
export * as gateway from "./gen/switchyard/gateway/v1/gateway_pb.js";
export * as classifier from "./gen/switchyard/classifier/v1/classifier_pb.js";
export * as policy from "./gen/switchyard/policy/v1/policy_pb.js";
export * as cache from "./gen/switchyard/cache/v1/cache_pb.js";
export * as provider from "./gen/switchyard/provider/v1/provider_pb.js";
export * as ledger from "./gen/switchyard/ledger/v1/ledger_pb.js";
export * as admin from "./gen/switchyard/gateway/v1/admin_pb.js";
export * as events from "./gen/switchyard/events/v1/events_pb.js";
export * as health from "./gen/grpc/health/v1/health_pb.js";
