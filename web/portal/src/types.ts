// The API's value shapes the pages share: money as an exact decimal string and its currency, a quantity
// of a wallet's unit.
export interface Money {
  amount: string;
  currency: string;
}

export interface Quantity {
  amount: string;
  unit: string;
}
