// A client written against the generated types: create a customer with
// attributes, assign it, and save a rule. `scripts/test` compiles it with a
// strict tsc against types generated from openapi/openapi.json.
import type { components } from "./api";

type Schemas = components["schemas"];

const customer: Schemas["CustomerCreate"] = {
  code: "C0001",
  name: "北京华电科技有限公司",
  categories: { TIER: "01", REGION: "0101" },
  attributes: { account_manager: "王芳", discount_rate: 0.15, seats: 12, key_account: true, since: "2024-01-01" },
};

const patch: Schemas["CustomerPatch"] = { attributes: { discount_rate: null, seats: 20 } };

const assignment: Schemas["AssignmentPut"] = {
  category: "01",
  reason: "年度销售额超过100万",
  locked: true,
  attributes: { account_manager: "王芳" },
};

const condition: Schemas["Condition"] = {
  all: [
    { field: "spend_12m", op: ">=", value: 1000000 },
    { not: { field: "category.REGION", op: "under", value: "01" } },
    { any: [{ field: "attr.discount_rate", op: "between", value: [0.1, 0.2] }, { field: "last_order_at", op: "is_null", value: true }] },
  ],
};

const rule: Schemas["RuleCreate"] = { name: "年消费超过100万为VIP", target_category: "01", priority: 10, condition };

function readBack(saved: Schemas["Customer"]): string | number | boolean | undefined {
  return saved.attributes["account_manager"];
}

function ruleCondition(saved: Schemas["Rule"]): Schemas["Condition"] {
  return saved.condition;
}

// Problem.code is a closed union of the documented codes: a typo does not compile.
function shouldRetry(problem: Schemas["Problem"]): boolean {
  switch (problem.code) {
    case "concurrent_update":
    case "database_unavailable":
    case "database_timeout":
      return true;
    default:
      return false;
  }
}

export { customer, patch, assignment, rule, readBack, ruleCondition, shouldRetry };
