//! Every text the pages show, in one catalogue per language, so that a
//! translation is one more table. A `{name}` in a text is filled by
//! [`fill`].

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Th,
}

impl Lang {
    pub fn parse(text: &str) -> Option<Lang> {
        match text {
            "en" => Some(Lang::En),
            "th" => Some(Lang::Th),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Th => "th",
        }
    }

    pub fn texts(self) -> &'static Texts {
        match self {
            Lang::En => &EN,
            Lang::Th => &TH,
        }
    }

    /// The other language, for the switch in the header.
    pub fn other(self) -> Lang {
        match self {
            Lang::En => Lang::Th,
            Lang::Th => Lang::En,
        }
    }
}

/// Fills each `{name}` of `template` with its value.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut text = template.to_owned();
    for (name, value) in values {
        text = text.replace(&format!("{{{name}}}"), value);
    }
    text
}

#[derive(Debug)]
pub struct Texts {
    pub language_name: &'static str,
    pub skip_to_content: &'static str,
    pub shop: &'static str,
    pub live_campaigns: &'static str,
    pub no_live_campaigns: &'static str,
    pub my_vouchers: &'static str,
    pub sign_in: &'static str,
    pub sign_up: &'static str,
    pub sign_out: &'static str,
    pub email: &'static str,
    pub password: &'static str,
    pub password_hint: &'static str,
    pub have_account: &'static str,
    pub no_account: &'static str,
    pub wrong_password: &'static str,
    pub email_taken: &'static str,
    pub password_rule: &'static str,
    pub off: &'static str,
    pub left_at_price: &'static str,
    pub left: &'static str,
    pub unlimited: &'static str,
    pub free: &'static str,
    pub price: &'static str,
    pub starts_in: &'static str,
    pub starts_at: &'static str,
    pub ends_at: &'static str,
    pub sold_out: &'static str,
    pub sold_out_detail: &'static str,
    pub not_started: &'static str,
    pub ended: &'static str,
    pub paused: &'static str,
    pub claim: &'static str,
    pub buy: &'static str,
    pub terms: &'static str,
    pub terms_of: &'static str,
    pub back_to_campaign: &'static str,
    pub confirm_claim: &'static str,
    pub checkout: &'static str,
    pub checkout_intro: &'static str,
    pub reserved_until: &'static str,
    pub card_number: &'static str,
    pub card_expiry: &'static str,
    pub card_expiry_hint: &'static str,
    pub card_cvc: &'static str,
    pub card_name: &'static str,
    pub pay: &'static str,
    pub fix_errors: &'static str,
    pub order: &'static str,
    pub order_pending: &'static str,
    pub order_paid: &'static str,
    pub order_failed: &'static str,
    pub your_code: &'static str,
    pub amount: &'static str,
    pub state: &'static str,
    pub code: &'static str,
    pub expires: &'static str,
    pub never: &'static str,
    pub campaign: &'static str,
    pub no_vouchers: &'static str,
    pub pay_now: &'static str,
    pub welcome_granted: &'static str,
    pub error: &'static str,
    pub try_again_in: &'static str,
    pub csrf_refused: &'static str,
    pub back_to_shop: &'static str,
    pub voucher_states: VoucherStateTexts,
}

#[derive(Debug)]
pub struct VoucherStateTexts {
    pub reserved: &'static str,
    pub issued: &'static str,
    pub locked: &'static str,
    pub redeemed: &'static str,
}

pub static EN: Texts = Texts {
    language_name: "English",
    skip_to_content: "Skip to content",
    shop: "Shop",
    live_campaigns: "On now",
    no_live_campaigns: "Nothing is on right now. Come back soon.",
    my_vouchers: "My vouchers and courses",
    sign_in: "Sign in",
    sign_up: "Create an account",
    sign_out: "Sign out",
    email: "Email",
    password: "Password",
    password_hint: "At least 10 characters.",
    have_account: "Already have an account?",
    no_account: "New here?",
    wrong_password: "That email and password do not match an account.",
    email_taken: "An account with this email exists already; sign in instead.",
    password_rule: "The password must be 10 to 128 characters long.",
    off: "{percent} % off",
    left_at_price: "{left} left at this price",
    left: "{left} left",
    unlimited: "No limit",
    free: "Free",
    price: "Price",
    starts_in: "Starts in",
    starts_at: "Starts",
    ends_at: "Ends",
    sold_out: "Sold out",
    sold_out_detail: "Every voucher has been taken. Thank you for your interest.",
    not_started: "Not started yet",
    ended: "This campaign has ended.",
    paused: "This campaign is paused for now.",
    claim: "Claim now",
    buy: "Buy now",
    terms: "Terms and conditions",
    terms_of: "Terms and conditions: {name}",
    back_to_campaign: "Back to the campaign",
    confirm_claim: "Please confirm: press the button again.",
    checkout: "Checkout",
    checkout_intro: "Your voucher is reserved for you. Pay to receive its code.",
    reserved_until: "Reserved until {time}",
    card_number: "Card number",
    card_expiry: "Expiry (MM/YY)",
    card_expiry_hint: "For example 04/29",
    card_cvc: "Security code (CVC)",
    card_name: "Name on the card",
    pay: "Pay {amount}",
    fix_errors: "Please correct the fields marked below.",
    order: "Order",
    order_pending: "We are taking your payment. This page updates by itself.",
    order_paid: "Paid. Your voucher is yours.",
    order_failed: "The payment did not go through: {reason}",
    your_code: "Your code",
    amount: "Amount",
    state: "State",
    code: "Code",
    expires: "Expires",
    never: "Never",
    campaign: "Campaign",
    no_vouchers: "You have no vouchers yet.",
    pay_now: "Pay now",
    welcome_granted: "Welcome! You received: {names}",
    error: "Something is not right",
    try_again_in: "Please try again in {seconds} s.",
    csrf_refused: "This form has expired or did not come from this site. Reload the page and send it again.",
    back_to_shop: "Back to the shop",
    voucher_states: VoucherStateTexts {
        reserved: "Reserved, waiting for payment",
        issued: "Ready to use",
        locked: "Being redeemed",
        redeemed: "Used",
    },
};

pub static TH: Texts = Texts {
    language_name: "ไทย",
    skip_to_content: "ข้ามไปที่เนื้อหา",
    shop: "ร้านค้า",
    live_campaigns: "กำลังเปิดขาย",
    no_live_campaigns: "ขณะนี้ยังไม่มีแคมเปญ กรุณากลับมาใหม่เร็ว ๆ นี้",
    my_vouchers: "บัตรกำนัลและคอร์สของฉัน",
    sign_in: "เข้าสู่ระบบ",
    sign_up: "สร้างบัญชี",
    sign_out: "ออกจากระบบ",
    email: "อีเมล",
    password: "รหัสผ่าน",
    password_hint: "อย่างน้อย 10 ตัวอักษร",
    have_account: "มีบัญชีอยู่แล้ว?",
    no_account: "เพิ่งเคยมาใช่ไหม?",
    wrong_password: "อีเมลและรหัสผ่านไม่ตรงกับบัญชีใด",
    email_taken: "มีบัญชีที่ใช้อีเมลนี้อยู่แล้ว กรุณาเข้าสู่ระบบ",
    password_rule: "รหัสผ่านต้องยาว 10 ถึง 128 ตัวอักษร",
    off: "ลด {percent} %",
    left_at_price: "เหลือ {left} ใบในราคานี้",
    left: "เหลือ {left} ใบ",
    unlimited: "ไม่จำกัดจำนวน",
    free: "ฟรี",
    price: "ราคา",
    starts_in: "เริ่มในอีก",
    starts_at: "เริ่ม",
    ends_at: "สิ้นสุด",
    sold_out: "ขายหมดแล้ว",
    sold_out_detail: "บัตรกำนัลถูกจองหมดแล้ว ขอบคุณที่ให้ความสนใจ",
    not_started: "ยังไม่เริ่ม",
    ended: "แคมเปญนี้สิ้นสุดแล้ว",
    paused: "แคมเปญนี้หยุดชั่วคราว",
    claim: "รับสิทธิ์เลย",
    buy: "ซื้อเลย",
    terms: "ข้อกำหนดและเงื่อนไข",
    terms_of: "ข้อกำหนดและเงื่อนไข: {name}",
    back_to_campaign: "กลับไปที่แคมเปญ",
    confirm_claim: "กรุณายืนยัน: กดปุ่มอีกครั้ง",
    checkout: "ชำระเงิน",
    checkout_intro: "บัตรกำนัลของคุณถูกจองไว้แล้ว ชำระเงินเพื่อรับรหัส",
    reserved_until: "จองไว้ถึง {time}",
    card_number: "หมายเลขบัตร",
    card_expiry: "วันหมดอายุ (ดด/ปป)",
    card_expiry_hint: "ตัวอย่าง 04/29",
    card_cvc: "รหัสความปลอดภัย (CVC)",
    card_name: "ชื่อบนบัตร",
    pay: "ชำระ {amount}",
    fix_errors: "กรุณาแก้ไขช่องที่ระบุด้านล่าง",
    order: "คำสั่งซื้อ",
    order_pending: "กำลังดำเนินการชำระเงิน หน้านี้จะอัปเดตเอง",
    order_paid: "ชำระเงินแล้ว บัตรกำนัลเป็นของคุณ",
    order_failed: "การชำระเงินไม่สำเร็จ: {reason}",
    your_code: "รหัสของคุณ",
    amount: "จำนวนเงิน",
    state: "สถานะ",
    code: "รหัส",
    expires: "หมดอายุ",
    never: "ไม่มีวันหมดอายุ",
    campaign: "แคมเปญ",
    no_vouchers: "คุณยังไม่มีบัตรกำนัล",
    pay_now: "ชำระเงินเลย",
    welcome_granted: "ยินดีต้อนรับ! คุณได้รับ: {names}",
    error: "เกิดข้อผิดพลาด",
    try_again_in: "กรุณาลองใหม่ในอีก {seconds} วินาที",
    csrf_refused: "แบบฟอร์มนี้หมดอายุหรือไม่ได้มาจากเว็บไซต์นี้ กรุณาโหลดหน้าใหม่แล้วส่งอีกครั้ง",
    back_to_shop: "กลับไปที่ร้านค้า",
    voucher_states: VoucherStateTexts {
        reserved: "จองแล้ว รอชำระเงิน",
        issued: "พร้อมใช้งาน",
        locked: "กำลังใช้สิทธิ์",
        redeemed: "ใช้แล้ว",
    },
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled() {
        assert_eq!(
            fill(EN.left_at_price, &[("left", "612")]),
            "612 left at this price"
        );
        assert_eq!(fill(TH.off, &[("percent", "90")]), "ลด 90 %");
    }

    #[test]
    fn every_language_uses_the_same_placeholders() {
        let placeholders = |text: &str| {
            let mut names: Vec<String> = text
                .split('{')
                .skip(1)
                .filter_map(|part| part.split_once('}').map(|(name, _)| name.to_owned()))
                .collect();
            names.sort();
            names
        };
        let pairs = [
            (EN.off, TH.off),
            (EN.left_at_price, TH.left_at_price),
            (EN.left, TH.left),
            (EN.terms_of, TH.terms_of),
            (EN.reserved_until, TH.reserved_until),
            (EN.pay, TH.pay),
            (EN.order_failed, TH.order_failed),
            (EN.welcome_granted, TH.welcome_granted),
            (EN.try_again_in, TH.try_again_in),
        ];
        for (en, th) in pairs {
            assert_eq!(placeholders(en), placeholders(th), "{en} / {th}");
        }
    }
}
