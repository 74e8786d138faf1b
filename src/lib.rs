//! portcullis: an AWS-ALB-style authenticating reverse proxy.
#![forbid(unsafe_code)]

pub mod config;
