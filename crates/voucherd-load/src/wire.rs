//! The parts of voucherd's JSON the load generator reads, written from the
//! API contract rather than shared with the server: if the server's shapes
//! drift from the contract, the load generator notices as a client would.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct CampaignWire {
    pub id: String,
    #[serde(default)]
    pub remaining: Option<u64>,
    /// `draft` while a publish answered 202 is still making its codes.
    #[serde(default)]
    pub state: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct VoucherWire {
    pub campaign_id: String,
    pub rank: u32,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub reservation_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct VoucherListWire {
    pub vouchers: Vec<VoucherWire>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LoginWire {
    #[serde(default)]
    pub granted: Vec<VoucherWire>,
    #[serde(default)]
    pub held: Vec<VoucherWire>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OrderCreatedWire {
    pub order_id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OrderWire {
    pub status: String,
    #[serde(default)]
    pub amount: Option<i64>,
    #[serde(default)]
    pub voucher: Option<VoucherWire>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReportWire {
    #[serde(default)]
    pub reserved: u64,
    #[serde(default)]
    pub issued_total: u64,
    #[serde(default)]
    pub by_tier: Vec<TierReportWire>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TierReportWire {
    pub first_rank: u32,
    #[serde(default)]
    pub last_rank: Option<u32>,
    pub discount_percent: u8,
    #[serde(default)]
    pub issued: u64,
    #[serde(default)]
    pub reserved: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct VoucherPageWire {
    pub vouchers: Vec<ExportedVoucherWire>,
    #[serde(default)]
    pub next_after_rank: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ExportedVoucherWire {
    pub rank: u32,
    pub code: String,
    pub state: String,
    #[serde(default)]
    pub user_id: Option<String>,
}

/// A problem answer: only its `type` is read.
#[derive(Debug, Clone, Deserialize)]
pub struct ProblemWire {
    #[serde(rename = "type", default)]
    pub kind: String,
}

/// A gateway simulator's `GET /ledger`.
#[derive(Debug, Clone, Deserialize)]
pub struct LedgerWire {
    pub charges: Vec<ChargeWire>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChargeWire {
    pub idempotency_key: String,
    pub amount: i64,
    pub status: String,
}
