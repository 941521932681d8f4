// The page's words in Chinese and English; `t(key, ...args)` in the language chosen.

const WORDS = {
  en: {
    title: "Exchange log audit",
    otherLanguage: "中文",
    signIn: "Sign in",
    signOut: "Sign out",
    token: "Token",
    logStatus: "Log and witnesses",
    checkpoint: "Latest checkpoint",
    sinceLastVisit: "Since your last visit",
    witnesses: "Witnesses",
    pinnedKey: "Pinned log key",
    pin: "Pin",
    pinPlaceholder: "verifier key from the trust list",
    you: "You",
    search: "Search",
    searchButton: "Search",
    peer: "Peer",
    zone: "Zone",
    purpose: "Purpose",
    subject: "Subject",
    subjectPlaceholder: "USCC or resident id",
    decision: "Decision",
    direction: "Direction",
    answered: "answered",
    asked: "asked",
    any: "any",
    since: "Since",
    until: "Until",
    exportCsv: "CSV",
    exportGb: "CSV (GB18030)",
    index: "#",
    time: "Time",
    reason: "Reason",
    more: "More",
    entry: "Entry",
    charts: "Charts",
    volumeChart: "Exchanges by peer and day",
    refusalChart: "Refusals by reason",
    accessLog: "Access log",
    who: "Who",
    role: "Role",
    action: "Action",
    filter: "Filter",
    rows: "Rows",
    httpStatus: "Status",
    shown: (n) => `${n} shown`,
    noEntries: "No entries match.",
    noData: "No data for these filters.",
    checking: "checking…",
    checkpointOk: (size, age) => `size ${size}, signature verified in this browser (${age})`,
    checkpointBad: (why) => `NOT VERIFIED: ${why}`,
    firstVisit: (size) => `first visit: checkpoint of size ${size} remembered`,
    consistent: (from, to) => `consistent: size ${from} → ${to} proven in this browser`,
    unchanged: (size) => `unchanged at size ${size}`,
    fork: (from, to, why) =>
      `FORK: the log no longer extends the checkpoint of size ${from} this browser verified before (now ${to}): ${why}`,
    witnessLine: (name, ok, when) =>
      ok ? `${name}: cosigned ${when}, verified` : `${name}: no cosignature on this checkpoint`,
    noWitnesses: "no witness keys on the trust lists",
    pinnedFirstUse: "pinned on first use: compare it with the trust list",
    pinMismatch: "the server now offers another log key; the pinned one is still used",
    verified: "Verified in this browser",
    notVerified: "NOT VERIFIED",
    stepBytes: "entry bytes hashed to the leaf hash",
    stepLeafOnly: "entry bytes withheld (a person's entry): leaf hash as served",
    stepProof: (size) => `inclusion proof recomputed to the root of size ${size}`,
    stepSignature: "checkpoint signature verified against the pinned log key",
    stepWitness: (n, m) => `${n} of ${m} witness cosignatures verified`,
    ago: (s) => (s < 120 ? `${Math.round(s)} s ago` : s < 7200 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`),
    roleLine: (name, role, zones) => `${name} (${role}; zones ${zones})`,
  },
  zh: {
    title: "交换日志审计",
    otherLanguage: "English",
    signIn: "登录",
    signOut: "退出",
    token: "令牌",
    logStatus: "日志与见证",
    checkpoint: "最新检查点",
    sinceLastVisit: "自上次访问以来",
    witnesses: "见证节点",
    pinnedKey: "固定的日志公钥",
    pin: "固定",
    pinPlaceholder: "信任列表中的验证公钥",
    you: "当前用户",
    search: "检索",
    searchButton: "检索",
    peer: "对端节点",
    zone: "合作区域",
    purpose: "用途",
    subject: "主体",
    subjectPlaceholder: "统一社会信用代码或身份证号",
    decision: "结果",
    direction: "方向",
    answered: "应答",
    asked: "查询",
    any: "全部",
    since: "起始",
    until: "截止",
    exportCsv: "CSV",
    exportGb: "CSV（GB18030）",
    index: "序号",
    time: "时间",
    reason: "原因",
    more: "更多",
    entry: "条目",
    charts: "统计图",
    volumeChart: "按对端节点和日期的交换量",
    refusalChart: "按原因的拒绝数",
    accessLog: "访问记录",
    who: "用户",
    role: "角色",
    action: "操作",
    filter: "条件",
    rows: "条数",
    httpStatus: "状态",
    shown: (n) => `已显示 ${n} 条`,
    noEntries: "没有符合条件的条目。",
    noData: "该条件下没有数据。",
    checking: "正在验证…",
    checkpointOk: (size, age) => `大小 ${size}，签名已在本浏览器中验证（${age}）`,
    checkpointBad: (why) => `未通过验证：${why}`,
    firstVisit: (size) => `首次访问：已记住大小为 ${size} 的检查点`,
    consistent: (from, to) => `一致：已在本浏览器中证明 ${from} → ${to}`,
    unchanged: (size) => `未变化，大小 ${size}`,
    fork: (from, to, why) =>
      `日志分叉：日志不再延续本浏览器此前验证的大小为 ${from} 的检查点（现为 ${to}）：${why}`,
    witnessLine: (name, ok, when) =>
      ok ? `${name}：已于 ${when} 联署，已验证` : `${name}：此检查点无联署`,
    noWitnesses: "信任列表中没有见证公钥",
    pinnedFirstUse: "首次使用时固定：请与信任列表核对",
    pinMismatch: "服务器提供了另一个日志公钥；仍使用已固定的公钥",
    verified: "已在本浏览器中验证",
    notVerified: "未通过验证",
    stepBytes: "条目字节的哈希与叶哈希一致",
    stepLeafOnly: "条目字节未提供（涉及个人）：使用服务器给出的叶哈希",
    stepProof: (size) => `包含证明已重新计算至大小为 ${size} 的树根`,
    stepSignature: "检查点签名已用固定的日志公钥验证",
    stepWitness: (n, m) => `${m} 个见证联署中 ${n} 个已验证`,
    ago: (s) => (s < 120 ? `${Math.round(s)} 秒前` : s < 7200 ? `${Math.round(s / 60)} 分钟前` : `${Math.round(s / 3600)} 小时前`),
    roleLine: (name, role, zones) => `${name}（${role}；区域 ${zones}）`,
  },
};

const STORE_KEY = "creditx.audit.lang";
let language = localStorage.getItem(STORE_KEY) || (navigator.language.startsWith("zh") ? "zh" : "en");

export function lang() {
  return language;
}

export function setLang(next) {
  language = next in WORDS ? next : "en";
  localStorage.setItem(STORE_KEY, language);
  apply();
}

export function t(key, ...args) {
  const word = WORDS[language][key] ?? WORDS.en[key] ?? key;
  return typeof word === "function" ? word(...args) : word;
}

export function apply(root = document) {
  document.documentElement.lang = language === "zh" ? "zh-CN" : "en";
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  }
}
